"""Command-line usage errors: exit code 2 and one line that names the value and the fix."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT, grade_folder


def run_grade(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_missing_path(tmp_path):
    result = run_grade(str(tmp_path / "absent"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("grade: error:")
    assert "absent does not exist" in result.stderr


def test_unknown_model_offline(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    env_run = subprocess.run(
        [sys.executable, "-m", "harness", str(tmp_path / "a.py"), "--model", "nobody/no-such-model-xyz",
         "--out", str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert env_run.returncode == 2
    assert "nobody/no-such-model-xyz" in env_run.stderr
    assert "tiny-gpt2" in env_run.stderr
    assert "smollm2-135m-instruct" in env_run.stderr
    assert "Traceback" not in env_run.stderr


def test_bad_timeout_value(tmp_path):
    result = run_grade(str(tmp_path), "--timeout", "-5")
    assert result.returncode == 2
    assert "must be a positive number of seconds, got -5" in result.stderr


def test_sandbox_bwrap_required_but_missing(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "harness", str(tmp_path / "a.py"), "--sandbox", "bwrap", "--model", "tiny-gpt2",
         "--out", str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "PATH": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "--sandbox=bwrap is not available: bwrap is not installed" in result.stderr


def test_fallback_isolation_stated_in_report(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "harness", str(tmp_path / "a.py"), "--model", "tiny-gpt2", "--out", str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "PATH": str(tmp_path)},
    )
    assert result.returncode == 0
    assert "Weaker isolation: bwrap is not installed" in result.stderr
    report = (tmp_path / "out" / "a" / "report.html").read_text()
    assert "Weaker isolation: bwrap is not installed" in report
    assert "separate process with rlimits only" in report


def test_progress_lines_when_not_a_terminal(three_folder, tmp_path, capsys):
    code, _ = grade_folder(three_folder, tmp_path / "out")
    assert code == 0
    captured = capsys.readouterr()
    progress = [line for line in captured.err.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in progress] == ["[1/3", "[2/3", "[3/3"]
    assert "left" in progress[0]
    assert "elapsed" in progress[-1]
    assert len([line for line in captured.out.splitlines() if "/100 (" in line]) == 3


def test_progress_bar_on_a_terminal(tmp_path):
    from harness.cli import Progress

    class Terminal:
        def __init__(self):
            self.text = ""

        def isatty(self):
            return True

        def write(self, text):
            self.text += text

        def flush(self):
            pass

    class Item:
        id = "alice"

    terminal = Terminal()
    progress = Progress(2, stream=terminal)
    progress.start(Item())
    assert "grading" in terminal.text
    assert "alice" in terminal.text
    assert "0/2" in terminal.text
