"""A submission that exits, crashes, hangs or kills itself never stops the batch or changes another's grade."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import EXAMPLES, grade_folder, statuses, write_notebook

LOAD = ('from transformers import AutoModelForCausalLM, AutoTokenizer\n'
        'tokenizer = AutoTokenizer.from_pretrained("microsoft/DialoGPT-medium")\n'
        'model = AutoModelForCausalLM.from_pretrained("microsoft/DialoGPT-medium")')
CHAT = ('def generate_response(input_text):\n'
        '    ids = tokenizer.encode(input_text, return_tensors="pt")\n'
        '    out = model.generate(ids, max_new_tokens=5, pad_token_id=tokenizer.eos_token_id)\n'
        '    return tokenizer.decode(out[0, ids.shape[-1]:], skip_special_tokens=True)')


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    shutil.copy(EXAMPLES / "alice_correct.ipynb", folder / "alice_correct.ipynb")
    write_notebook(folder / "loop_then_exit.ipynb", [
        ("code", LOAD),
        ("code", "while True:\n    pass"),
        ("code", "import sys\nsys.exit(3)"),
        ("code", "exit()"),
        ("code", CHAT),
    ])
    write_notebook(folder / "hard_exit.ipynb", [
        ("code", LOAD),
        ("code", "import os\nos._exit(0)"),
        ("code", CHAT),
    ])
    write_notebook(folder / "kills_itself_in_check.ipynb", [
        ("code", LOAD),
        ("code", "import os, signal\n\ndef generate_response(input_text):\n    os.kill(os.getpid(), signal.SIGKILL)"),
    ])
    write_notebook(folder / "ignores_interrupts.ipynb", [
        ("code", LOAD),
        ("code", "import time\nwhile True:\n    try:\n        time.sleep(0.5)\n    except BaseException:\n        pass"),
    ])
    (folder / "broken.ipynb").write_text('{"cells": [', encoding="utf-8")
    out = tmp_path_factory.mktemp("out")
    code, summary = grade_folder(folder, out, "--cell-timeout", "12", "--check-timeout", "60")
    return code, summary


def test_batch_completes(graded):
    code, summary = graded
    assert code == 0
    assert len(summary["submissions"]) == 6


def test_unreadable_notebook_graded_as_error(graded):
    _, summary = graded
    assert set(statuses(summary, "broken").values()) == {"error"}
    assert "broken.ipynb is not valid JSON" in summary["submissions"]["broken"]["problem"]


def test_neighbour_unaffected(graded):
    _, summary = graded
    assert summary["submissions"]["alice_correct"]["score"] == 100


def test_soft_timeout_and_exits_continue(graded):
    _, summary = graded
    result = statuses(summary, "loop_then_exit")
    assert result["model.load"] == "passed"
    assert result["chatbot.before_after"] == "skipped"
    assert result["interface.gradio"] == "failed"
    report = summary["submissions"]["loop_then_exit"]
    assert report["problem"] is None


def test_os_exit_skips_later_checks(graded):
    _, summary = graded
    result = statuses(summary, "hard_exit")
    assert result["model.load"] == "skipped"
    assert result["exercises.answered"] == "failed"
    problem = summary["submissions"]["hard_exit"]["problem"]
    assert "cell-2" in problem
    assert "exit code 0" in problem


def test_kill_during_check_keeps_earlier_checks(graded):
    _, summary = graded
    result = statuses(summary, "kills_itself_in_check")
    assert result["model.load"] == "passed"
    assert result["tokenization.round_trip"] == "passed"
    assert result["chatbot.before_after"] == "error"
    assert result["interface.gradio"] == "skipped"
    message = summary["submissions"]["kills_itself_in_check"]["checks"]["chatbot.before_after"]["message"]
    assert "killed by signal 9" in message


def test_hard_kill_after_ignored_interrupt(graded):
    _, summary = graded
    result = statuses(summary, "ignores_interrupts")
    assert result["tokenization.round_trip"] == "skipped"
    problem = summary["submissions"]["ignores_interrupts"]["problem"]
    assert "did not finish within 12 s and did not stop when interrupted" in problem
