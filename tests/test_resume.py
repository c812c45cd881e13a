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

from tests.conftest import EXAMPLES, ROOT, THREE

def grade_command(folder, out, *extra):
    return [sys.executable, "-m", "harness", str(folder), "--model", "tiny-gpt2", "--out", str(out), "-v",
            "--threads", "1", "--jobs", "2", *extra]


def run_grade(folder, out, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(grade_command(folder, out, *extra), cwd=ROOT, capture_output=True, text=True, timeout=600)


def comparable(out):
    """summary.json and grades.csv, which hold no timings."""
    return json.loads((out / "summary.json").read_text()), (out / "grades.csv").read_text()


def test_kill_then_resume(three_folder, three_graded, tmp_path):
    out = tmp_path / "out"
    grader = subprocess.Popen(grade_command(three_folder, out), cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    first = out / "carol_no_training" / "result.json"
    deadline = time.monotonic() + 300
    while not first.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert first.exists()
    os.killpg(grader.pid, signal.SIGKILL)
    grader.wait()
    assert not (out / "summary.json").exists()
    finished = {path.parent.name: path.stat().st_mtime_ns for path in out.glob("*/result.json")}
    assert "carol_no_training" in finished
    assert len(finished) < 3

    resumed = run_grade(three_folder, out)
    assert resumed.returncode == 0, resumed.stderr
    for name in THREE:
        submission_id = name.removesuffix(".ipynb")
        reused = f"{submission_id}: already graded with the same file and settings" in resumed.stderr
        assert reused == (submission_id in finished), submission_id
    for submission_id, modified in finished.items():
        assert (out / submission_id / "result.json").stat().st_mtime_ns == modified
    summary, grades = comparable(out)
    assert sorted(summary["submissions"]) == ["carol_no_training", "frank_syntax_error", "henry_cuda"]
    assert (summary, grades) == comparable(three_graded)


def test_second_run_identical_and_reused(three_folder, three_graded, tmp_path):
    again = tmp_path / "again"
    shutil.copytree(three_graded, again)
    result = run_grade(three_folder, again)
    assert result.returncode == 0
    for name in THREE:
        assert f"{name.removesuffix('.ipynb')}: already graded" in result.stderr
    assert comparable(again) == comparable(three_graded)


def test_changed_file_regraded(three_folder, three_graded, tmp_path):
    copy = tmp_path / "class"
    shutil.copytree(three_folder, copy)
    out = tmp_path / "out"
    shutil.copytree(three_graded, out)
    notebook = json.loads((copy / "henry_cuda.ipynb").read_text())
    for cell in notebook["cells"]:
        cell["source"] = "".join(cell["source"]).replace('.to("cuda")', "")
    (copy / "henry_cuda.ipynb").write_text(json.dumps(notebook))
    result = run_grade(copy, out)
    assert result.returncode == 0
    assert "henry_cuda: already graded" not in result.stderr
    assert "carol_no_training: already graded" in result.stderr
    summary, _ = comparable(out)
    assert summary["submissions"]["henry_cuda"]["checks"]["model.load"]["status"] == "passed"


def test_force_regrades(three_graded, tmp_path):
    single = tmp_path / "single"
    single.mkdir()
    shutil.copy(EXAMPLES / "henry_cuda.ipynb", single / "henry_cuda.ipynb")
    out = tmp_path / "out"
    shutil.copytree(three_graded, out)
    result = run_grade(single, out, "--force")
    assert result.returncode == 0
    assert "already graded" not in result.stderr
    henry = json.loads((out / "summary.json").read_text())["submissions"]["henry_cuda"]
    assert henry == json.loads((three_graded / "summary.json").read_text())["submissions"]["henry_cuda"]
