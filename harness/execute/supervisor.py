"""Run one submission as a child of a slot's zygote, enforce the wall-clock limits, collect its events and output."""

from __future__ import annotations

import json
import logging
import os
import re
import select
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import GradeConfig
from harness.execute.slots import Slot, base_environment
from harness.models import ModelSpec
from harness.source import Program

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2
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
    """Report of one submission process: its events, its output and how it ended."""

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
              strings: list[str], env: dict[str, str], project: dict | None = None) -> dict[str, Any]:
    limits = config.limits
    return {
        "cells": [{"index": cell.index, "python": cell.python} for cell in program.code_cells],
        "model_dir": str(model.path),
        "workdir": str(workdir),
        "artifacts": str(artifacts),
        "output_fifo": str(artifacts / "output.fifo"),
        "env": env,
        "seed": config.seed,
        "threads": config.submission_threads,
        "limits": {"cell": limits.cell, "check": limits.check},
        "probe": {
            "strings": strings,
            "chat_prompts": list(config.rubric.chat_prompts),
            "max_new_tokens": config.rubric.max_new_tokens,
            "pair_text": config.rubric.prompt + "\n" + config.rubric.response,
            # Set for a final-project run: the held-out contexts to ask, and the decoding seed.
            "project": project,
        },
    }


def run_program(program: Program, model: ModelSpec, config: GradeConfig, slot: Slot, strings: list[str],
                project: dict | None = None) -> RunOutcome:
    """Run `program` as a child of `slot`'s zygote, in a new working folder inside the slot's sandbox."""
    slot.ensure_started()
    job_folder = slot.new_job_folder()
    workdir, artifacts = job_folder / "work", job_folder / "artifacts"
    for folder in (workdir, artifacts):
        folder.mkdir()
        os.chmod(folder, 0o777)
    env = base_environment(workdir, config.submission_threads)
    env["HF_HOME"] = str(slot.home / "huggingface")
    job = build_job(program, model, config, workdir, artifacts, strings, env, project)
    job_path = artifacts / "job.json"
    job_path.write_text(json.dumps(job, indent=1), encoding="utf-8")
    events_path = artifacts / "events.jsonl"
    events_path.touch()
    os.chmod(events_path, 0o666)
    os.mkfifo(artifacts / "output.fifo", 0o666)
    fifo = os.open(artifacts / "output.fifo", os.O_RDONLY | os.O_NONBLOCK)

    started = time.monotonic()
    outcome = RunOutcome(artifacts=artifacts, collector=OutputCollector(config.limits.output_bytes))
    try:
        slot.submit(job_path)
        _supervise(slot, fifo, events_path, config, outcome, started)
        if outcome.exit_code is None:
            # Killed by the grader: the whole slot goes, and the next submission starts a fresh one.
            slot.stop()
        _drain(fifo, outcome.collector)
        outcome.limit_hit = _limit_hit(outcome, slot)
    finally:
        os.close(fifo)
    outcome.seconds = round(time.monotonic() - started, 3)
    return outcome


def _limit_hit(outcome: RunOutcome, slot: Slot) -> str | None:
    limits, cgroup = slot.limits, slot.cgroup
    gib = limits.memory_bytes / 2**30
    if cgroup is not None and cgroup.hit_memory_limit(killed=outcome.exit_code == -signal.SIGKILL):
        return f"used more than {gib:g} GiB of memory"
    if cgroup is not None and cgroup.hit_process_limit():
        return f"tried to run more than {limits.processes} processes or threads at once"
    if outcome.exit_code == -signal.SIGXCPU:
        return f"used more than {limits.cpu_seconds} s of CPU time"
    if outcome.exit_code == -signal.SIGXFSZ:
        return f"wrote a file larger than {limits.file_bytes // 2**20} MiB"
    return None


def _read_available(fifo: int, collector: OutputCollector) -> bool:
    """Read what the FIFO contains now; return False at end of file (every writer closed it)."""
    while True:
        try:
            chunk = os.read(fifo, 1 << 20)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        collector.feed(chunk)


def _drain(fifo: int, collector: OutputCollector) -> None:
    deadline = time.monotonic() + 2.0
    while _read_available(fifo, collector) and time.monotonic() < deadline:
        select.select([fifo], [], [], 0.1)


def _supervise(slot: Slot, fifo: int, events_path: Path, config: GradeConfig, outcome: RunOutcome,
               started: float) -> None:
    limits = config.limits
    step, step_started, step_limit = "startup", started, limits.check
    with open(events_path, "rb") as events:
        while True:
            _read_available(fifo, outcome.collector)
            exit_code = slot.poll_exit(POLL_SECONDS)
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
            if exit_code is not None:
                outcome.exit_code = exit_code
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


