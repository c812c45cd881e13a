"""The reference solution scores full marks, as a script and as a notebook, on several models."""

from __future__ import annotations

import shutil

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from harness.source import load_program
from tests.conftest import REFERENCE, grade_folder, statuses


def reference_notebook(path):
    program = load_program(REFERENCE)
    notebook = new_notebook(cells=[new_code_cell(cell.source) if cell.kind == "code" else new_markdown_cell(cell.source)
                                   for cell in program.cells])
    nbformat.write(notebook, path)
    return path


def test_reference_full_marks_tiny_llama(submissions, tmp_path):
    shutil.copy(REFERENCE, submissions / "reference.py")
    reference_notebook(submissions / "reference_notebook.ipynb")
    code, summary = grade_folder(submissions, tmp_path / "out", model="tiny-llama")
    assert code == 0
    for submission_id in ("reference", "reference_notebook"):
        result = summary["submissions"][submission_id]
        assert set(statuses(summary, submission_id).values()) == {"passed"}
        assert result["score"] == result["max_score"] == 100


@pytest.mark.default_model
def test_reference_full_marks_default_model(submissions, tmp_path):
    reference_notebook(submissions / "reference.ipynb")
    code, summary = grade_folder(submissions, tmp_path / "out", model="smollm2-135m-instruct")
    assert code == 0
    assert set(statuses(summary, "reference").values()) == {"passed"}
    model = summary["environment"]["model"]
    assert model["name"] == "smollm2-135m-instruct"
    assert "SmolLM2-135M-Instruct" in model["description"]
    tuning = summary["submissions"]["reference"]["checks"]["finetune.loss_decreases"]["message"]
    assert "measured by the grader" in tuning
