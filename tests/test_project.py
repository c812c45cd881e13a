"""The final project: a reference that scores full marks, broken projects with the right verdicts, two models."""

from __future__ import annotations

import json
import shutil

import pytest

from harness.cli import main
from tests.conftest import ROOT, statuses

PROJECT = ROOT / "examples" / "project"
REFERENCE = ROOT / "reference" / "final_project.py"
P, F, E, S = "passed", "failed", "error", "skipped"
CHECKS = ("project.chat", "project.improvement", "project.forgetting", "project.discussion")
RUBRIC = "[project]\nexamples = 4\n"


def grade_project(folder, out, *models, extra=()):
    arguments = ["project", str(folder), "--out", str(out)]
    for model in models:
        arguments += ["--model", model]
    code = main([*arguments, "--cell-timeout", "120", *extra])
    summary_path = out / "summary.json"
    return code, json.loads(summary_path.read_text()) if summary_path.exists() else {}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The reference with two models (the comparison), and the broken projects with the first one only."""
    rubric = tmp_path_factory.mktemp("project-rubric") / "rubric.toml"
    rubric.write_text(RUBRIC)
    reference = tmp_path_factory.mktemp("reference-project")
    shutil.copy(REFERENCE, reference / "reference_project.py")
    broken = tmp_path_factory.mktemp("broken-projects")
    for path in PROJECT.glob("*.py"):
        shutil.copy(path, broken / path.name)
    out = tmp_path_factory.mktemp("project-out")
    code, _ = grade_project(reference, out, "tiny-gpt2", "tiny-llama", extra=("--rubric", str(rubric)))
    assert code == 0
    broken_out = tmp_path_factory.mktemp("broken-out")
    code, summary = grade_project(broken, broken_out, "tiny-gpt2", extra=("--rubric", str(rubric)))
    reference_summary = json.loads((out / "summary.json").read_text())
    summary["submissions"].update(reference_summary["submissions"])
    return code, summary, out, broken_out


def test_verdicts(graded):
    code, summary, _, _ = graded
    assert code == 0
    assert statuses(summary, "reference_project") == dict(zip(CHECKS, (P, P, P, P)))
    assert summary["submissions"]["reference_project"]["score"] == 100
    assert statuses(summary, "ivan_no_training") == dict(zip(CHECKS, (P, F, S, P)))
    assert statuses(summary, "judy_canned_chat") == dict(zip(CHECKS, (F, P, P, P)))


def test_messages_explain_the_verdicts(graded):
    _, summary, _, _ = graded
    ivan = summary["submissions"]["ivan_no_training"]["checks"]["project.improvement"]["message"]
    assert "pretrained weights: no training happened" in ivan
    judy = summary["submissions"]["judy_canned_chat"]["checks"]["project.chat"]["message"]
    assert "ignores the model it is given" in judy
    reference = summary["submissions"]["reference_project"]["checks"]["project.improvement"]["message"]
    assert "held-out perplexity went from" in reference


def test_measurements_per_model(graded):
    _, _, out, broken_out = graded
    result = json.loads((out / "reference_project" / "result.json").read_text())
    models = result["project"]["models"]
    assert list(models) == ["tiny-gpt2", "tiny-llama"]
    for row in models.values():
        assert row["perplexity_after"]["held_out"] < row["perplexity_before"]["held_out"]
        assert set(row["metrics_after"]) == {"chrf", "bleu", "rouge"}
    assert len(result["project"]["samples"]) == 4
    ivan = json.loads((broken_out / "ivan_no_training" / "result.json").read_text())
    assert ivan["project"]["models"]["tiny-gpt2"]["changed_tensors"] == 0


def test_reports_have_the_project_section(graded):
    _, _, out, _ = graded
    student = (out / "reference_project" / "student.html").read_text()
    assert 'id="project-metrics"' in student
    assert "Reply overlap before and after fine-tuning (tiny-gpt2)" in student
    assert "<svg" in student
    assert "Sample replies" in student
    index = (out / "index.html").read_text()
    assert 'id="project-models"' in index
    assert index.count('<th scope="row">tiny-') == 2
    with open(out / "manual_scores.csv") as handle:
        assert handle.readline().strip() == "submission,discussion,comment"


def test_own_dataset_is_validated(tmp_path):
    source = REFERENCE.read_text().replace(
        "import torch\n",
        'import torch\nPROJECT_DATASET = [{"id": "mine-1", "persona": ["I fly kites."], '
        '"turns": [{"speaker": "user", "text": "Hi"}, {"speaker": "assistant", "text": "Hello"}]}]\n', 1)
    folder = tmp_path / "own"
    folder.mkdir()
    (folder / "own_data.py").write_text(source)
    code, summary = grade_project(folder, tmp_path / "out", "tiny-gpt2")
    assert code == 0
    message = summary["submissions"]["own_data"]["checks"]["project.improvement"]["message"]
    assert "Your own dataset (PROJECT_DATASET) is malformed" in message
    assert 'record 1 (line 1): field "turns"[1]["speaker"] is "assistant"; allowed: "user" or "bot"' in message


def test_committed_project_notebook_is_up_to_date():
    assert main(["assign", "--check", "--reference", str(REFERENCE),
                 "--out", str(ROOT / "assignments" / "final_project.ipynb")]) == 0
