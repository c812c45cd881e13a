"""A batch killed with SIGKILL resumes: finished submissions are reused, the final outputs equal a clean run's."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import EXAMPLES, ROOT

NAMES = ("carol_no_training.ipynb", "frank_syntax_error.ipynb", "henry_cuda.ipynb")


def grade_command(folder, out, *extra):
    return [sys.executable, "-m", "harness", str(folder), "--model", "tiny-gpt2", "--out", str(out), "-v", *extra]


def run_grade(folder, out, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(grade_command(folder, out, *extra), cwd=ROOT, capture_output=True, text=True, timeout=600)


def comparable(out):
    """summary.json and grades.csv, which hold no timings."""
    return json.loads((out / "summary.json").read_text()), (out / "grades.csv").read_text()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("class")
    for name in NAMES:
        shutil.copy(EXAMPLES / name, path / name)
    return path


@pytest.fixture(scope="module")
def clean_run(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    result = run_grade(folder, out)
    assert result.returncode == 0, result.stderr
    return out


def test_kill_then_resume(folder, clean_run, tmp_path):
    out = tmp_path / "out"
    grader = subprocess.Popen(grade_command(folder, out), cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    first = out / "carol_no_training" / "result.json"
    deadline = time.monotonic() + 300
    while not first.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert first.exists()
    os.killpg(grader.pid, signal.SIGKILL)
    grader.wait()
    assert not (out / "summary.json").exists()
    finished_at = first.stat().st_mtime_ns

    resumed = run_grade(folder, out)
    assert resumed.returncode == 0, resumed.stderr
    assert "carol_no_training: already graded with the same file and settings" in resumed.stderr
    assert "henry_cuda: already graded" not in resumed.stderr
    assert first.stat().st_mtime_ns == finished_at
    summary, grades = comparable(out)
    assert sorted(summary["submissions"]) == ["carol_no_training", "frank_syntax_error", "henry_cuda"]
    assert (summary, grades) == comparable(clean_run)


def test_second_run_identical_and_reused(folder, clean_run, tmp_path):
    again = tmp_path / "again"
    shutil.copytree(clean_run, again)
    result = run_grade(folder, again)
    assert result.returncode == 0
    for name in NAMES:
        assert f"{name.removesuffix('.ipynb')}: already graded" in result.stderr
    assert comparable(again) == comparable(clean_run)


def test_changed_file_regraded(folder, clean_run, tmp_path):
    copy = tmp_path / "class"
    shutil.copytree(folder, copy)
    out = tmp_path / "out"
    shutil.copytree(clean_run, out)
    notebook = json.loads((copy / "frank_syntax_error.ipynb").read_text())
    for cell in notebook["cells"]:
        cell["source"] = "".join(cell["source"]).replace('report_to="none"\n', 'report_to="none")\n')
    (copy / "frank_syntax_error.ipynb").write_text(json.dumps(notebook))
    result = run_grade(copy, out)
    assert result.returncode == 0
    assert "frank_syntax_error: already graded" not in result.stderr
    summary, _ = comparable(out)
    assert summary["submissions"]["frank_syntax_error"]["score"] == 100


def test_force_regrades(clean_run, tmp_path):
    single = tmp_path / "single"
    single.mkdir()
    shutil.copy(EXAMPLES / "henry_cuda.ipynb", single / "henry_cuda.ipynb")
    out = tmp_path / "out"
    shutil.copytree(clean_run, out)
    result = run_grade(single, out, "--force")
    assert result.returncode == 0
    assert "already graded" not in result.stderr
    henry = json.loads((out / "summary.json").read_text())["submissions"]["henry_cuda"]
    assert henry == json.loads((clean_run / "summary.json").read_text())["submissions"]["henry_cuda"]
