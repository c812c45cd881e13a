"""The bundled example submissions grade with exactly the expected statuses (tiny-gpt2)."""

from __future__ import annotations

import csv
import json

import pytest

from tests.conftest import statuses

P, F, E, T, S = "passed", "failed", "error", "timeout", "skipped"
CHECKS = ("model.load", "tokenization.round_trip", "tokenization.hidden", "finetune.loss_decreases",
          "chatbot.before_after", "interface.gradio", "exercises.answered")
EXPECTED = {
    "alice_correct": (P, P, P, P, P, P, P),
    "bob_textdataset": (P, P, P, E, S, P, F),
    "carol_no_training": (P, P, P, F, S, P, P),
    "dave_lossy_tokenizer": (P, F, F, P, P, P, P),
    "erin_hangs": (P, P, P, T, S, P, P),
    "frank_syntax_error": (P, P, P, E, S, P, P),
    "grace_colab_export": (P, P, P, P, P, P, P),
    "henry_cuda": (E, P, P, S, S, S, P),
}


@pytest.fixture(scope="module")
def graded(examples_graded):
    return examples_graded


def test_batch_exit_code(graded):
    code, _, _ = graded
    assert code == 0


@pytest.mark.parametrize("submission_id", sorted(EXPECTED))
def test_example_statuses(graded, submission_id):
    _, summary, _ = graded
    assert statuses(summary, submission_id) == dict(zip(CHECKS, EXPECTED[submission_id]))


def test_messages_name_the_fix(graded):
    _, summary, _ = graded
    checks = {sid: sub["checks"] for sid, sub in summary["submissions"].items()}
    assert "TextDataset was removed in transformers 5" in checks["bob_textdataset"]["finetune.loss_decreases"]["message"]
    assert "trainer.train() was never called" in checks["carol_no_training"]["finetune.loss_decreases"]["message"]
    assert "within 20 s" in checks["erin_hangs"]["finetune.loss_decreases"]["message"]
    assert "SyntaxError" in checks["frank_syntax_error"]["finetune.loss_decreases"]["message"]
    assert "torch.cuda.is_available()" in checks["henry_cuda"]["model.load"]["message"]
    assert "single space ' ' gave ''" in checks["dave_lossy_tokenizer"]["tokenization.round_trip"]["message"]
    assert "No answer found for exercise 5.1, 6.1" in checks["bob_textdataset"]["exercises.answered"]["message"]


def test_partial_credit(graded):
    _, summary, _ = graded
    dave = summary["submissions"]["dave_lossy_tokenizer"]["checks"]["tokenization.round_trip"]
    assert 0 < dave["score"] < dave["max_score"]
    bob = summary["submissions"]["bob_textdataset"]["checks"]["exercises.answered"]
    assert bob["score"] == pytest.approx(bob["max_score"] * 4 / 6, abs=0.01)


def test_outputs_written(graded):
    _, summary, out = graded
    assert (out / "index.html").is_file()
    index = (out / "index.html").read_text()
    for submission_id in EXPECTED:
        assert f'href="{submission_id}/report.html"' in index
        report = (out / submission_id / "report.html").read_text()
        assert "Environment" in report
        assert "transformers" in report
        results = json.loads((out / submission_id / "results.json").read_text())
        assert set(results) >= {"score", "execution_time", "tests"}
        for test in results["tests"]:
            assert set(test) >= {"name", "score", "max_score", "status", "output", "tags"}
            assert test["status"] in ("passed", "failed")
            assert test["tags"][0] in CHECKS
    with open(out / "grades.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["submission"] for row in rows] == sorted(EXPECTED)
    alice = next(row for row in rows if row["submission"] == "alice_correct")
    assert alice["total"] == "100"
    assert alice["finetune.loss_decreases (status)"] == "passed"


def test_report_shows_evidence(graded):
    _, _, out = graded
    alice = (out / "alice_correct" / "report.html").read_text()
    assert "Chatbot before and after fine-tuning" in alice
    assert "chrF" in alice
    assert "cell 2: !pip install transformers datasets gradio" in alice
    assert "Generation was capped at 48 new tokens (the code asked for max_length=1000)" in alice
    dave = (out / "dave_lossy_tokenizer" / "report.html").read_text()
    assert "first difference at character 0 (marked)" in dave
    assert "<mark>" in dave
    assert "<svg" in alice
    assert "Loss of the trained pair over the optimizer steps" in alice
    grace = (out / "grace_colab_export" / "report.html").read_text()
    assert "launch(share=True)" in grace
    assert "google.colab.drive.mount" in grace


def test_student_text_escaped(graded):
    _, _, out = graded
    dave = (out / "dave_lossy_tokenizer" / "report.html").read_text()
    assert "<cell" not in dave.replace("&lt;cell", "")
