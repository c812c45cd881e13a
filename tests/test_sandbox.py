"""Hostile submissions: each gets the expected verdict, and none changes the grade of another in the batch."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from harness.execute.sandbox import bwrap_works, cgroups_available
from tests.conftest import EXAMPLES, ROOT, grade_folder, statuses, write_notebook

LOAD = ('from transformers import AutoModelForCausalLM, AutoTokenizer\n'
        'tokenizer = AutoTokenizer.from_pretrained("microsoft/DialoGPT-medium")\n'
        'model = AutoModelForCausalLM.from_pretrained("microsoft/DialoGPT-medium")')

SPY = '''
import json, os, socket
seen = {}
for name, path in PATHS.items():
    try:
        with open(path) as handle:
            handle.read(10)
        seen[name] = "read"
    except OSError as error:
        seen[name] = type(error).__name__
for name, path in TARGETS.items():
    try:
        with open(path, "w") as handle:
            handle.write("forged")
        seen[name] = "written"
    except OSError as error:
        seen[name] = type(error).__name__
try:
    socket.create_connection(("127.0.0.1", HOST_PORT), timeout=2)
    seen["network"] = "connected"
except OSError as error:
    seen["network"] = type(error).__name__
try:
    os.kill(os.getppid(), 9)
    seen["kill parent"] = "sent"
except OSError as error:
    seen["kill parent"] = type(error).__name__
print("SPY " + json.dumps(seen))
'''

FORGER = '''
import json, torch
# Fake a fine-tuning: a loss that is always tiny, and a forward that reports it.
torch.nn.functional.cross_entropy = lambda *args, **kwargs: torch.tensor(0.001)
original_forward = model.forward
def forward(*args, **kwargs):
    output = original_forward(*args, **kwargs)
    output.loss = torch.tensor(0.001)
    return output
model.forward = forward
torch.equal = lambda *args: False
with open("results.json", "w") as handle:
    json.dump({"score": 100, "tests": []}, handle)
print('{"score": 100, "max_score": 100, "status": "passed"}')
def generate_response(input_text):
    return "I'm good, thank you."
'''


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    out = tmp_path_factory.mktemp("out")
    other = tmp_path_factory.mktemp("other-student")
    (other / "secret.ipynb").write_text("{}")
    paths = {"reference": str(ROOT / "reference" / "lab_solution.py"),
             "other submission": str(other / "secret.ipynb"),
             "example": str(EXAMPLES / "alice_correct.ipynb")}
    targets = {"reports folder": str(out / "forged.txt"), "outside folder": str(ROOT / "forged.txt")}

    shutil.copy(EXAMPLES / "alice_correct.ipynb", folder / "alice_correct.ipynb")
    write_notebook(folder / "loops_in_check.ipynb", [
        ("code", LOAD),
        ("code", "def generate_response(input_text):\n    while True:\n        pass"),
    ])
    write_notebook(folder / "fork_bomb.ipynb", [
        ("code", LOAD),
        ("code", "import os\nwhile True:\n    os.fork()"),
    ])
    write_notebook(folder / "memory_bomb.ipynb", [
        ("code", LOAD),
        ("code", "blob = bytearray(b'x') * (6 * 2**30)"),
    ])
    write_notebook(folder / "segfault.ipynb", [
        ("code", LOAD),
        ("code", "import ctypes\nctypes.string_at(0)"),
    ])
    write_notebook(folder / "output_flood.ipynb", [
        ("code", "import sys\nline = 'x' * (2**20 - 1) + '\\n'\nfor _ in range(1024):\n    sys.stdout.write(line)"),
        ("code", LOAD),
    ])
    # A server of the grading host on its loopback: a sandboxed submission has its own loopback and cannot reach it.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    write_notebook(folder / "spy.ipynb", [
        ("code", f"PATHS = {paths!r}\nTARGETS = {targets!r}\nHOST_PORT = {port}\n" + SPY),
    ])
    write_notebook(folder / "forger.ipynb", [("code", LOAD), ("code", FORGER)])
    with open(folder / "huge.py", "w") as handle:
        handle.write(("# padding line of a very large file\n" * 6_000_000)[: 200 * 2**20])

    try:
        code, summary = grade_folder(folder, out, "--cell-timeout", "30", "--check-timeout", "8", "--memory", "3")
    finally:
        listener.close()
    return {"code": code, "summary": summary, "out": out, "folder": folder, "targets": targets}


def result(corpus, submission_id):
    return json.loads((corpus["out"] / submission_id / "result.json").read_text())


def test_batch_finishes(corpus):
    assert corpus["code"] == 0
    assert len(corpus["summary"]["submissions"]) == 9


def test_neighbour_grades_as_alone(corpus, tmp_path):
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(EXAMPLES / "alice_correct.ipynb", alone / "alice_correct.ipynb")
    _, summary = grade_folder(alone, tmp_path / "out")
    in_batch = corpus["summary"]["submissions"]["alice_correct"]
    assert in_batch["score"] == 100
    assert in_batch["checks"] == summary["submissions"]["alice_correct"]["checks"]


def test_infinite_loop_in_check(corpus):
    result_statuses = statuses(corpus["summary"], "loops_in_check")
    assert result_statuses["model.load"] == "passed"
    assert result_statuses["chatbot.before_after"] == "timeout"
    message = corpus["summary"]["submissions"]["loops_in_check"]["checks"]["chatbot.before_after"]["message"]
    assert "did not finish within 8 s" in message


@pytest.mark.skipif(not cgroups_available(), reason="needs a writable cgroup v1 pids controller (root)")
def test_fork_bomb_capped(corpus):
    graded = result(corpus, "fork_bomb")
    fork_cell = graded["cells"][1]
    assert fork_cell["status"] == "error"
    assert fork_cell["error_type"] == "BlockingIOError"
    assert "caps how many" in fork_cell["hint"]
    assert statuses(corpus["summary"], "fork_bomb")["model.load"] == "passed"


def test_memory_bomb_named_limit(corpus):
    graded = result(corpus, "memory_bomb")
    if graded["problem"]:
        assert "used more than 3 GiB of memory" in graded["problem"]
    else:
        assert graded["cells"][1]["error_type"] == "MemoryError"
        assert "out of memory" in graded["cells"][1]["hint"]


def test_segfault_reported(corpus):
    graded = result(corpus, "segfault")
    assert statuses(corpus["summary"], "segfault")["model.load"] == "skipped"
    assert "killed by signal 11" in graded["checks"][0]["message"]
    assert "exit code -11" in graded["problem"]


def test_output_flood_truncated(corpus):
    graded = result(corpus, "output_flood")
    assert statuses(corpus["summary"], "output_flood")["model.load"] == "passed"
    output = graded["cells"][0]["output"]
    assert len(output) < 10_000
    assert "characters cut" in output


@pytest.mark.skipif(bwrap_works() is not None, reason="needs bubblewrap")
def test_spy_sees_and_changes_nothing(corpus):
    output = result(corpus, "spy")["cells"][0]["output"]
    seen = json.loads(output.split("SPY ", 1)[1])
    assert seen["reference"] == "FileNotFoundError"
    assert seen["other submission"] == "FileNotFoundError"
    assert seen["example"] == "FileNotFoundError"
    assert seen["network"] == "ConnectionRefusedError"
    for path in corpus["targets"].values():
        assert not Path(path).exists()


def test_forged_results_ignored(corpus):
    graded = statuses(corpus["summary"], "forger")
    assert graded["finetune.loss_decreases"] == "failed"
    assert graded["chatbot.before_after"] == "skipped"
    message = corpus["summary"]["submissions"]["forger"]["checks"]["finetune.loss_decreases"]["message"]
    assert "weights" in message
    assert corpus["summary"]["submissions"]["forger"]["score"] < 100


def test_huge_file_rejected(corpus):
    graded = corpus["summary"]["submissions"]["huge"]
    assert set(statuses(corpus["summary"], "huge").values()) == {"error"}
    assert "200 MiB, over the 20 MiB limit" in graded["problem"]


@pytest.mark.parametrize("submission_id", ["fork_bomb", "memory_bomb"])
def test_hostile_grades_as_alone(corpus, submission_id, tmp_path):
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(corpus["folder"] / f"{submission_id}.ipynb", alone / f"{submission_id}.ipynb")
    _, summary = grade_folder(alone, tmp_path / "out", "--cell-timeout", "30", "--check-timeout", "8",
                              "--memory", "3")
    assert summary["submissions"][submission_id] == corpus["summary"]["submissions"][submission_id]
