"""Shared fixtures: notebooks built with nbformat, and a helper that grades a folder through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from harness.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "submissions"
REFERENCE = ROOT / "reference" / "lab_solution.py"


def write_notebook(path: Path, cells: list[tuple[str, str]]) -> Path:
    """Write a notebook of ("code" | "markdown", source) cells, validated by nbformat."""
    notebook = new_notebook(cells=[new_code_cell(source) if kind == "code" else new_markdown_cell(source)
                                   for kind, source in cells])
    nbformat.validate(notebook)
    nbformat.write(notebook, path)
    return path


def grade_folder(folder: Path, out: Path, *extra: str, model: str = "tiny-gpt2", jobs: int = 2) -> tuple[int, dict]:
    """Run `grade FOLDER --model MODEL --out OUT --jobs JOBS EXTRA...`; return the exit code and summary.json."""
    code = main([str(folder), "--model", model, "--out", str(out), "--jobs", str(jobs), *extra])
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return code, summary


def statuses(summary: dict, submission_id: str) -> dict[str, str]:
    return {check_id: check["status"] for check_id, check in summary["submissions"][submission_id]["checks"].items()}


@pytest.fixture
def submissions(tmp_path: Path) -> Path:
    folder = tmp_path / "submissions"
    folder.mkdir()
    return folder


@pytest.fixture
def copy_example(submissions: Path):
    def copy(name: str) -> Path:
        return Path(shutil.copy(EXAMPLES / name, submissions / name))

    return copy


THREE = ("carol_no_training.ipynb", "frank_syntax_error.ipynb", "henry_cuda.ipynb")


@pytest.fixture(scope="session")
def three_folder(tmp_path_factory) -> Path:
    """Three quick examples (no training runs), used by the resume and parallel tests."""
    path = tmp_path_factory.mktemp("three")
    for name in THREE:
        shutil.copy(EXAMPLES / name, path / name)
    return path


@pytest.fixture(scope="session")
def three_graded(three_folder, tmp_path_factory) -> Path:
    """The three examples graded one at a time with one thread: the reference every speed-up must match."""
    out = tmp_path_factory.mktemp("three-graded")
    code, _ = grade_folder(three_folder, out, "--threads", "1", jobs=1)
    assert code == 0
    return out


@pytest.fixture(scope="session")
def examples_graded(tmp_path_factory) -> tuple[int, dict, Path]:
    """Every bundled example graded once with tiny-gpt2: (exit code, summary.json, output folder)."""
    out = tmp_path_factory.mktemp("examples-graded")
    code, summary = grade_folder(EXAMPLES, out, "--cell-timeout", "20")
    return code, summary, out
