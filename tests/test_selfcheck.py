"""`grade check FILE`: the student's self-check prints what to fix, writes the report, exits 0 only when all pass."""

from __future__ import annotations

import contextlib
import io
import shutil
from dataclasses import dataclass

import pytest

from harness.checks.tokenization import HIDDEN_STRINGS
from harness.cli import main
from tests.conftest import EXAMPLES


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def self_check(path, out, *extra) -> Run:
    """Run `grade check PATH` in this process, as the console script does, capturing what it prints."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(["check", str(path), "--model", "tiny-gpt2", "--out", str(out), *extra])
        except SystemExit as exit:
            code = exit.code
    return Run(code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="module")
def dave(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dave")
    shutil.copy(EXAMPLES / "dave_lossy_tokenizer.ipynb", folder / "lab.ipynb")
    return self_check(folder / "lab.ipynb", folder / "self-check"), folder


def test_failing_notebook_exits_1_with_next_steps(dave):
    run, folder = dave
    assert run.returncode == 1, run.stderr
    lines = run.stdout.splitlines()
    assert any(line.startswith("FIX  tokenization.round_trip") for line in lines)
    assert any(line.startswith("ok   finetune.loss_decreases") for line in lines)
    assert "next: `decode_tokens(encode_text(s))` changed 2 of 10 test strings" in run.stdout
    assert "5 of 6 public checks passed" in run.stdout
    assert (folder / "self-check" / "lab" / "student.html").is_file()


def test_hidden_checks_stay_out_of_the_self_check(dave):
    run, folder = dave
    assert "tokenization.hidden" not in run.stdout
    student = (folder / "self-check" / "lab" / "student.html").read_text()
    results = (folder / "self-check" / "lab" / "results.json").read_text()
    for label, text in HIDDEN_STRINGS:
        if len(text.strip()) >= 4:
            assert text not in run.stdout
            assert text not in student, label
            assert text not in results, label


def test_passing_notebook_exits_0(tmp_path):
    shutil.copy(EXAMPLES / "alice_correct.ipynb", tmp_path / "lab.ipynb")
    run = self_check(tmp_path / "lab.ipynb", tmp_path / "self-check")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "6 of 6 public checks passed" in run.stdout
    assert "FIX" not in run.stdout


def test_not_a_file_is_a_usage_error(tmp_path):
    run = self_check(tmp_path, tmp_path / "out")
    assert run.returncode == 2
    assert "is not a file; pass your notebook (.ipynb) or script (.py)" in run.stderr


def test_student_loop_fix_then_pass(tmp_path):
    """Receive the assignment, fill it in with a mistake, self-check, fix the mistake, self-check again."""
    import nbformat

    from harness.assign import DEFAULT_ASSIGNMENT
    from tests.conftest import ROOT
    from tests.test_assign import fill_in

    lab = fill_in(ROOT / DEFAULT_ASSIGNMENT, tmp_path / "lab.ipynb")
    notebook = nbformat.read(lab, as_version=4)
    correct = "skip_special_tokens=True, clean_up_tokenization_spaces=False)"
    cell = next(cell for cell in notebook.cells if correct in cell.source)
    cell.source = cell.source.replace(correct, correct + ".strip()")
    nbformat.write(notebook, lab)

    first = self_check(lab, tmp_path / "self-check")
    assert first.returncode == 1
    assert "FIX  tokenization.round_trip" in first.stdout

    cell.source = cell.source.replace(correct + ".strip()", correct)
    nbformat.write(notebook, lab)
    second = self_check(lab, tmp_path / "self-check")
    assert second.returncode == 0, second.stdout
    assert "6 of 6 public checks passed" in second.stdout
