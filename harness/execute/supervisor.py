"""Run one submission in its own process and working folder, enforce the wall-clock limits, collect its events."""

from __future__ import annotations

import json
import logging
import os
import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import GradeConfig
from harness.execute.sandbox import (
    Cgroup,
    Isolation,
    ResourceLimits,
    apply_rlimits,
    bwrap_command,
    die_with_parent,
    python_roots,
)
from harness.models import ModelSpec
from harness.source import Program

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2
HARNESS_PACKAGE = Path(__file__).resolve().parents[1]
# The worker writes this line to its output at the start of each step, so output can be split per step.
STEP_MARKER = re.compile(rb"\x1e\[grader-step (?P<step>[\w.\-]+)\]\n")
TAIL_BYTES = 8 * 1024


class OutputCollector:
    """Splits the submission's combined stdout/stderr into steps, keeping at most `cap` bytes of each."""

    def __init__(self, cap: int):
        self.cap = cap
        self.step = "setup"
        self.heads: dict[str, bytearray] = {}
        self.tails: dict[str, bytes] = {}
        self.dropped: dict[str, int] = {}
        self._pending = b""

    def feed(self, data: bytes) -> None:
        data = self._pending + data
        # Keep a possibly incomplete marker for the next chunk.
        cut = data.rfind(b"\x1e")
        if cut != -1 and b"\n" not in data[cut:]:
            data, self._pending = data[:cut], data[cut:]
        else:
            self._pending = b""
        position = 0
        for marker in STEP_MARKER.finditer(data):
            self._append(data[position:marker.start()])
            self.step = marker.group("step").decode()
            position = marker.end()
        self._append(data[position:])

    def _append(self, data: bytes) -> None:
        if not data:
            return
        head = self.heads.setdefault(self.step, bytearray())
        room = self.cap - len(head)
        head += data[:max(room, 0)]
        if len(data) > room:
            overflow = data[max(room, 0):]
            self.dropped[self.step] = self.dropped.get(self.step, 0) + len(overflow)
            self.tails[self.step] = (self.tails.get(self.step, b"") + overflow)[-TAIL_BYTES:]

    def text(self, step: str, limit: int) -> str:
        head = bytes(self.heads.get(step, b"")).decode("utf-8", "replace")
        dropped = self.dropped.get(step, 0)
        if dropped == 0 and len(head) <= limit:
            return head
        tail = self.tails.get(step, b"").decode("utf-8", "replace") if dropped else head[-limit // 2:]
        total = len(head) + dropped
        return f"{head[:limit // 2]}\n[... {total - limit // 2 - len(tail[-limit // 2:]):,} characters cut ...]\n{tail[-limit // 2:]}"

    def total_dropped(self) -> int:
        return sum(self.dropped.values())


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
    collector: OutputCollector | None = None
    # A resource cap the process ran into, named with its value, when the grader could tell.
    limit_hit: str | None = None

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
        return self.collector.text(step, limit) if self.collector else ""


def build_job(program: Program, model: ModelSpec, config: GradeConfig, workdir: Path, artifacts: Path,
              strings: list[str]) -> dict[str, Any]:
    limits = config.limits
    return {
        "cells": [{"index": cell.index, "python": cell.python} for cell in program.code_cells],
        "model_dir": str(model.path),
        "workdir": str(workdir),
        "artifacts": str(artifacts),
        "seed": config.seed,
        "threads": config.submission_threads,
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


def resource_limits(config: GradeConfig) -> ResourceLimits:
    limits = config.limits
    threads = config.submission_threads
    return ResourceLimits(
        memory_bytes=int(limits.memory_gib * 2**30),
        # CPU time over all threads; wall-clock limits stop a run long before this unless it spins every core.
        cpu_seconds=int(limits.submission * threads) + 60,
        file_bytes=limits.file_mib * 2**20,
        processes=limits.processes,
    )


def run_program(program: Program, model: ModelSpec, config: GradeConfig, workdir: Path, artifacts: Path,
                strings: list[str], isolation: Isolation) -> RunOutcome:
    """Run `program` in a new, isolated process inside `workdir`, writing its artifacts into `artifacts`."""
    workdir.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    job = build_job(program, model, config, workdir, artifacts, strings)
    job_path = artifacts / "job.json"
    job_path.write_text(json.dumps(job, indent=1), encoding="utf-8")
    events_path = artifacts / "events.jsonl"
    events_path.touch()

    env = child_environment(workdir, job["threads"])
    argv = [sys.executable, "-u", "-m", "harness.execute.worker", str(job_path)]
    if isolation.mode == "bwrap":
        os.chmod(workdir, 0o777)
        readable = [*python_roots(), HARNESS_PACKAGE, Path(model.path).resolve()]
        argv = bwrap_command(readable=readable, writable=[workdir, artifacts], workdir=workdir, argv=argv, env=env)

    limits = resource_limits(config)
    cgroup = Cgroup(limits) if isolation.cgroups and isolation.mode != "none" else None

    def prepare_child() -> None:
        die_with_parent()
        if cgroup is not None:
            cgroup.join()
        if isolation.mode != "none":
            # With a cgroup capping memory, RLIMIT_AS would only add spurious failures of virtual reservations.
            apply_rlimits(limits if cgroup is None else ResourceLimits(
                memory_bytes=resource_infinity(), cpu_seconds=limits.cpu_seconds, file_bytes=limits.file_bytes,
                processes=limits.processes))

    started = time.monotonic()
    outcome = RunOutcome(artifacts=artifacts, collector=OutputCollector(config.limits.output_bytes))
    try:
        process = subprocess.Popen(
            argv,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=prepare_child,
        )
        try:
            _supervise(process, events_path, config, outcome, started)
        finally:
            _kill_group(process)
            _drain(process, outcome.collector)
        if isolation.mode == "bwrap" and outcome.exit_code is not None and outcome.exit_code > 128:
            # bwrap exits with 128 + N when the sandboxed process died of signal N.
            outcome.exit_code = 128 - outcome.exit_code
        outcome.limit_hit = _limit_hit(outcome, limits, cgroup)
    finally:
        if cgroup is not None:
            cgroup.close()
    outcome.seconds = round(time.monotonic() - started, 3)
    return outcome


def resource_infinity() -> int:
    import resource

    return resource.RLIM_INFINITY


def _limit_hit(outcome: RunOutcome, limits: ResourceLimits, cgroup: Cgroup | None) -> str | None:
    gib = limits.memory_bytes / 2**30
    if cgroup is not None and cgroup.hit_memory_limit():
        return f"used more than {gib:g} GiB of memory"
    if cgroup is not None and cgroup.hit_process_limit():
        return f"tried to run more than {limits.processes} processes or threads at once"
    if outcome.exit_code == -signal.SIGXCPU:
        return f"used more than {limits.cpu_seconds} s of CPU time"
    if outcome.exit_code == -signal.SIGXFSZ:
        return f"wrote a file larger than {limits.file_bytes // 2**20} MiB"
    return None


def _drain(process: subprocess.Popen, collector: OutputCollector) -> None:
    if process.stdout is None:
        return
    while True:
        chunk = process.stdout.read1(1 << 20) if hasattr(process.stdout, "read1") else process.stdout.read(1 << 20)
        if not chunk:
            break
        collector.feed(chunk)
    process.stdout.close()


def _supervise(process: subprocess.Popen, events_path: Path, config: GradeConfig, outcome: RunOutcome,
               started: float) -> None:
    limits = config.limits
    step, step_started, step_limit = "startup", started, limits.check
    pipe = process.stdout
    os.set_blocking(pipe.fileno(), False)
    with open(events_path, "rb") as events:
        while True:
            readable, _, _ = select.select([pipe], [], [], POLL_SECONDS)
            if readable:
                chunk = pipe.read(1 << 20)
                if chunk:
                    outcome.collector.feed(chunk)
            exited = process.poll() is not None
            while True:
                position = events.tell()
                line = events.readline()
                if not line.endswith(b"\n"):
                    # Nothing new, or a line the process is still writing: read it on the next poll.
                    events.seek(position)
                    break
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                step, step_started, step_limit = _apply_event(event, outcome, step, step_started, step_limit)
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
    os.set_blocking(pipe.fileno(), True)
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
