"""Run one submission in its own process and working folder, enforce the wall-clock limits, collect its events."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import GradeConfig
from harness.models import ModelSpec
from harness.source import Program

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2


@dataclass
class RunOutcome:
    """What the submission process reported, and how it ended."""

    cells: dict[int, dict[str, Any]] = field(default_factory=dict)
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)
    recorder: dict[str, Any] = field(default_factory=dict)
    finished: bool = False
    exit_code: int | None = None
    # Set when the grader killed the process: the step running at the time and why.
    killed_in: str | None = None
    kill_reason: str | None = None
    seconds: float = 0.0
    artifacts: Path | None = None

    # The step that was running when the process stopped: `cell-3`, `probe-model.load`, `startup`.
    last_step: str | None = None

    @property
    def stopped_in(self) -> str | None:
        """The step the process was in when it stopped early (killed, crashed or exited), if it did."""
        if self.finished:
            return None
        return self.killed_in or self.last_step

    def output(self, step: str, limit: int) -> str:
        """Return the captured output of a step (`cell-3`, `probe-model.load`), cut to `limit` characters."""
        if self.artifacts is None:
            return ""
        path = self.artifacts / "output" / f"{step}.txt"
        if not path.is_file():
            return ""
        size = path.stat().st_size
        with open(path, "rb") as handle:
            if size <= limit:
                return handle.read().decode("utf-8", "replace")
            head = handle.read(limit // 2).decode("utf-8", "replace")
            handle.seek(size - limit // 2)
            tail = handle.read().decode("utf-8", "replace")
        return f"{head}\n[... {size - limit} bytes cut ...]\n{tail}"


def build_job(program: Program, model: ModelSpec, config: GradeConfig, workdir: Path, artifacts: Path,
              strings: list[str]) -> dict[str, Any]:
    limits = config.limits
    return {
        "cells": [{"index": cell.index, "python": cell.python} for cell in program.code_cells],
        "model_dir": str(model.path),
        "workdir": str(workdir),
        "artifacts": str(artifacts),
        "seed": config.seed,
        "threads": config.threads or os.cpu_count() or 1,
        "limits": {"cell": limits.cell, "check": limits.check},
        "probe": {
            "strings": strings,
            "chat_prompts": list(config.rubric.chat_prompts),
            "max_new_tokens": config.rubric.max_new_tokens,
        },
    }


def child_environment(workdir: Path, threads: int) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "GRADIO_"))}
    harness_root = str(Path(__file__).resolve().parents[2])
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [harness_root, env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
        HOME=str(workdir),
        HF_HOME=str(workdir / ".cache" / "huggingface"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        GRADIO_ANALYTICS_ENABLED="False",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        TOKENIZERS_PARALLELISM="false",
        WANDB_DISABLED="true",
        WANDB_MODE="disabled",
        MPLBACKEND="Agg",
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
    )
    return env


def run_program(program: Program, model: ModelSpec, config: GradeConfig, workdir: Path, artifacts: Path,
                strings: list[str]) -> RunOutcome:
    """Run `program` in a new process inside `workdir`, writing its artifacts into `artifacts`."""
    workdir.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    job = build_job(program, model, config, workdir, artifacts, strings)
    job_path = artifacts / "job.json"
    job_path.write_text(json.dumps(job, indent=1), encoding="utf-8")
    events_path = artifacts / "events.jsonl"
    events_path.touch()

    log = open(artifacts / "process.txt", "wb")
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "harness.execute.worker", str(job_path)],
        cwd=workdir,
        env=child_environment(workdir, job["threads"]),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    outcome = RunOutcome(artifacts=artifacts)
    try:
        _supervise(process, events_path, config, outcome, started)
    finally:
        _kill_group(process)
        log.close()
    outcome.seconds = round(time.monotonic() - started, 3)
    return outcome


def _supervise(process: subprocess.Popen, events_path: Path, config: GradeConfig, outcome: RunOutcome,
               started: float) -> None:
    limits = config.limits
    step, step_started, step_limit = "startup", started, limits.check
    with open(events_path, "rb") as events:
        while True:
            exited = process.poll() is not None
            while True:
                position = events.tell()
                line = events.readline()
                if not line.endswith(b"\n"):
                    # Nothing new, or a line the process is still writing: read it on the next poll.
                    events.seek(position)
                    break
                step, step_started, step_limit = _apply_event(json.loads(line), outcome, step, step_started, step_limit)
            if exited:
                outcome.exit_code = process.returncode
                break

            now = time.monotonic()
            if now - step_started > step_limit + limits.grace:
                outcome.killed_in = step
                outcome.kill_reason = f"did not finish within {step_limit:g} s and did not stop when interrupted"
                break
            if now - started > limits.submission:
                outcome.killed_in = step
                outcome.kill_reason = f"the whole submission did not finish within {limits.submission:g} s"
                break
            time.sleep(POLL_SECONDS)
    outcome.last_step = step


def _apply_event(event: dict, outcome: RunOutcome, step: str, step_started: float, step_limit: float):
    kind = event["event"]
    now = time.monotonic()
    if kind == "cell_start":
        return f"cell-{event['index']}", now, event["limit"]
    if kind == "cell_end":
        outcome.cells[event["index"]] = event
        return "between-steps", now, step_limit
    if kind == "probe_start":
        return f"probe-{event['check']}", now, event["limit"]
    if kind == "probe":
        outcome.probes[event["check"]] = event["data"]
        return "between-steps", now, step_limit
    if kind == "recorder":
        outcome.recorder = event["data"]
    elif kind == "done":
        outcome.finished = True
    return step, step_started, step_limit


def _kill_group(process: subprocess.Popen) -> None:
    """Kill the submission process and everything it started (it leads its own session)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()
