"""The GitHub Actions workflow for a GPU runner: its structure, and every `grade` command it runs against the CLI."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from harness import cli
from tests.conftest import ROOT

WORKFLOW = ROOT / "assignments" / "workflows" / "grade-gpu.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


@pytest.fixture(scope="module")
def steps(workflow) -> list[dict]:
    return workflow["jobs"]["grade"]["steps"]


def triggers(workflow: dict) -> dict:
    # PyYAML follows YAML 1.1, where a bare `on` key is the boolean True.
    return workflow["on"] if "on" in workflow else workflow[True]


def grade_commands(steps: list[dict]) -> list[list[str]]:
    """Return the arguments after `grade` of every shell line in a `run:` step that starts with `grade`."""
    commands = []
    for step in steps:
        script = step.get("run", "")
        for line in script.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "grade":
                commands.append(words[1:])
    return commands


class Parsed(Exception):
    """Raised in place of running a subcommand, carrying the namespace its parser returned."""

    def __init__(self, namespace: argparse.Namespace):
        super().__init__("parsed")
        self.namespace = namespace


def parse_grade(arguments: list[str], capsys, monkeypatch) -> argparse.Namespace:
    """Parse `grade ARGUMENTS` as the CLI does, failing the test with argparse's message when it rejects them.

    The main command goes to `build_parser()`. Subcommands (such as `merge`) are dispatched by `cli.main` before
    that parser, each with a parser of its own, so they run through `cli.main` and stop once parsed.
    """
    try:
        if arguments and arguments[0] in getattr(cli, "SUBCOMMANDS", {"merge": None}):
            original = argparse.ArgumentParser.parse_args

            def stop_after_parsing(parser, args=None, namespace=None):
                raise Parsed(original(parser, args, namespace))

            monkeypatch.setattr(argparse.ArgumentParser, "parse_args", stop_after_parsing)
            cli.main(arguments)
            pytest.fail(f"`grade {shlex.join(arguments)}` returned without parsing its arguments")
        return cli.build_parser().parse_args(arguments)
    except Parsed as parsed:
        return parsed.namespace
    except SystemExit:
        message = capsys.readouterr().err.strip().splitlines()
        pytest.fail(f"`grade {shlex.join(arguments)}` is rejected by the CLI: {message[-1] if message else ''}")
    finally:
        monkeypatch.undo()


def step_using(steps: list[dict], action: str) -> list[dict]:
    return [step for step in steps if step.get("uses", "").split("@")[0] == action]


def test_workflow_top_level_keys(workflow):
    assert workflow["name"]
    assert "grade" in workflow["jobs"]
    assert workflow["permissions"] == {"contents": "read"}


def test_workflow_triggers(workflow):
    on = triggers(workflow)
    assert "workflow_dispatch" in on
    assert "submissions/**" in on["push"]["paths"]


def test_runs_on_gpu_runner(workflow):
    labels = workflow["jobs"]["grade"]["runs-on"]
    assert "self-hosted" in labels
    assert "gpu" in labels


def test_steps_use_or_run(steps):
    for step in steps:
        assert ("uses" in step) != ("run" in step), step


def test_checks_out_both_repositories(steps):
    checkouts = step_using(steps, "actions/checkout")
    assert len(checkouts) == 2
    assert "repository" not in checkouts[0].get("with", {})
    assert checkouts[1]["with"]["repository"]
    assert checkouts[1]["with"]["path"] == ".grader"


def test_python_311(steps):
    (setup,) = step_using(steps, "actions/setup-python")
    assert str(setup["with"]["python-version"]) == "3.11"


def test_torch_installed_before_grader(steps):
    scripts = [step.get("run", "") for step in steps]
    torch_step = next(index for index, script in enumerate(scripts) if '"torch==$TORCH_VERSION"' in script)
    grader_step = next(index for index, script in enumerate(scripts) if "pip install" in script and "./.grader" in script)
    assert torch_step < grader_step


def test_torch_pin_matches_scripts_setup(workflow):
    setup = (ROOT / "scripts" / "setup").read_text()
    pinned = re.search(r"^TORCH_VERSION=(\S+)$", setup, re.M).group(1)
    assert workflow["jobs"]["grade"]["env"]["TORCH_VERSION"] == pinned


def test_upload_runs_always(steps):
    (upload,) = step_using(steps, "actions/upload-artifact")
    assert upload["if"] == "always()"
    assert upload["with"]["path"].rstrip("/") == "reports"


def test_grade_step_may_fail(steps):
    for step in steps:
        assert not step.get("continue-on-error"), step


def test_grade_commands_found(steps):
    assert grade_commands(steps)


def test_grade_commands_parse(steps, capsys, monkeypatch):
    for arguments in grade_commands(steps):
        parse_grade(arguments, capsys, monkeypatch)


def test_grade_command_options(steps, capsys, monkeypatch):
    (arguments,) = grade_commands(steps)
    parsed = parse_grade(arguments, capsys, monkeypatch)
    assert parsed.path == Path("submissions")
    assert parsed.model == "microsoft/DialoGPT-medium"
    assert parsed.device == "cuda"
    assert parsed.jobs == 1
    assert parsed.out == Path("reports")


@pytest.mark.parametrize("code", [0, 1, 2])
def test_grade_step_exit_code(steps, tmp_path, code):
    """The grade step, run as GitHub runs it, exits as `grade` does: 0 passes, 1 and 2 fail the job."""
    (step,) = [step for step in steps if step.get("name") == "Grade"]
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    fake = bin_folder / "grade"
    fake.write_text(f"#!/bin/sh\nexit {code}\n")
    fake.chmod(0o755)
    script = tmp_path / "step.sh"
    script.write_text(step["run"])

    completed = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                               capture_output=True, text=True, env={"PATH": f"{bin_folder}:/usr/bin:/bin"})

    assert completed.returncode == code
    assert ("::error::" in completed.stdout) == (code != 0)


def test_parse_helper_reads_subcommand(capsys, monkeypatch):
    parsed = parse_grade(["merge", "shard-1", "shard-2", "--out", "combined"], capsys, monkeypatch)
    assert parsed.folders == [Path("shard-1"), Path("shard-2")]
    assert parsed.out == Path("combined")


def test_parse_helper_rejects_unknown_option(capsys, monkeypatch):
    with pytest.raises(pytest.fail.Exception, match="unrecognized arguments: --no-such-option"):
        parse_grade(["submissions", "--no-such-option"], capsys, monkeypatch)
