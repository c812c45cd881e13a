"""Job slots: one long-lived, sandboxed zygote process per concurrent job, reused for submission after submission."""

from __future__ import annotations

import itertools
import logging
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.config import GradeConfig
from harness.device import device_nodes
from harness.execute.sandbox import Cgroup, Isolation, ResourceLimits, apply_rlimits, bwrap_command, die_with_parent, python_roots
from harness.models import ModelSpec

logger = logging.getLogger(__name__)

HARNESS_PACKAGE = Path(__file__).resolve().parents[1]
READY_SECONDS = 300.0


class SlotError(RuntimeError):
    """The zygote of a slot failed to start or stopped responding."""


def resource_limits(config: GradeConfig) -> ResourceLimits:
    limits = config.limits
    return ResourceLimits(
        memory_bytes=int(limits.memory_gib * 2**30),
        # CPU time over all threads; wall-clock limits stop a run long before this unless it spins every core.
        cpu_seconds=int(limits.submission * config.submission_threads) + 60,
        file_bytes=limits.file_mib * 2**20,
        processes=limits.processes,
    )


def base_environment(home: Path, threads: int) -> dict[str, str]:
    """Environment of the zygote and of every submission; the Hugging Face libraries read it at import time."""
    env = {key: os.environ[key] for key in ("PATH", "LANG", "LC_ALL", "TZ") if key in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(
        PYTHONPATH=str(HARNESS_PACKAGE.parent),
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
        HOME=str(home),
        HF_HOME=str(home / "huggingface"),
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


class Slot:
    """A sandboxed zygote and the folder it may write; `run` hands it one submission at a time."""

    _numbers = itertools.count(1)

    def __init__(self, model: ModelSpec, config: GradeConfig, isolation: Isolation):
        self.model = model
        self.config = config
        self.isolation = isolation
        self.limits = resource_limits(config)
        self.number = next(self._numbers)
        self.folder = Path(tempfile.mkdtemp(prefix=f"grade-slot{self.number}-"))
        os.chmod(self.folder, 0o777)
        self.home = self.folder / "home"
        self.process: subprocess.Popen | None = None
        self.cgroup: Cgroup | None = None
        self._jobs = itertools.count(1)
        self._buffer = b""
        self._ready = False
        self._launched = 0.0

    # -- lifecycle --------------------------------------------------------------------------------------------

    def ensure_started(self) -> None:
        """Start the zygote if it is not running, and wait until it has imported everything."""
        if self.process is None or self.process.poll() is not None:
            self.launch()
        if self._ready:
            return
        line = self.read_line(READY_SECONDS)
        if line != "ready":
            log_text = (self.folder / "zygote.log").read_text(errors="replace")[-3000:]
            self.stop()
            raise SlotError(f"the worker process of slot {self.number} did not start ({line!r}):\n{log_text}")
        self._ready = True
        logger.info("slot %d ready in %.1f s (%s)", self.number, time.monotonic() - self._launched, self.isolation.mode)

    def launch(self) -> None:
        """Start the zygote without waiting for its imports, so they overlap with the grader's own preparation."""
        if self.process is not None and self.process.poll() is None:
            return
        self.stop()
        self.home.mkdir(exist_ok=True)
        os.chmod(self.home, 0o777)
        env = base_environment(self.home, self.config.submission_threads)
        scratch = [self.home]
        if self.isolation.mode == "bwrap":
            # Inside the sandbox /tmp is the slot's own tmpfs and every process belongs to the slot.
            scratch.append(Path("/tmp"))
            env["GRADER_PID_NAMESPACE"] = "1"
        env["GRADER_SCRATCH"] = os.pathsep.join(str(path) for path in scratch)
        if self.config.device == "cpu":
            # Graded on the CPU, a submission finds no GPU even on a machine that has one.
            env["CUDA_VISIBLE_DEVICES"] = ""

        argv = [sys.executable, "-u", "-m", "harness.execute.zygote"]
        if self.isolation.mode == "bwrap":
            readable = [*python_roots(), HARNESS_PACKAGE, Path(self.model.path).resolve()]
            devices = device_nodes() if self.config.device == "cuda" else []
            argv = bwrap_command(readable=readable, writable=[self.folder], workdir=self.folder, argv=argv, env=env,
                                 devices=devices)
        if self.isolation.cgroups and self.isolation.mode != "none":
            self.cgroup = Cgroup(self.limits)

        cgroup, limits, mode = self.cgroup, self.limits, self.isolation.mode

        def prepare() -> None:
            die_with_parent()
            if cgroup is not None:
                cgroup.join()
            if mode != "none":
                apply_rlimits(limits, address_space=cgroup is None)

        log = open(self.folder / "zygote.log", "ab")
        self._launched = time.monotonic()
        self._ready = False
        self.process = subprocess.Popen(argv, cwd=self.folder, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=log, start_new_session=True, preexec_fn=prepare)
        log.close()
        self._buffer = b""

    def stop(self) -> None:
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.process.wait()
            for stream in (self.process.stdin, self.process.stdout):
                if stream:
                    stream.close()
            self.process = None
        if self.cgroup is not None:
            self.cgroup.close()
            self.cgroup = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- jobs -------------------------------------------------------------------------------------------------

    def new_job_folder(self) -> Path:
        folder = self.folder / f"job-{next(self._jobs)}"
        folder.mkdir()
        os.chmod(folder, 0o777)
        return folder

    def submit(self, job_path: Path) -> int:
        """Hand `job_path` to the zygote and return the child's pid."""
        if self.cgroup is not None:
            self.cgroup.mark()
        self.process.stdin.write(f"run {job_path}\n".encode())
        self.process.stdin.flush()
        line = self.read_line(60.0)
        if not line.startswith("started "):
            raise SlotError(f"slot {self.number} did not start the job: {line!r}")
        return int(line.split()[1])

    def read_line(self, timeout: float) -> str:
        """Return the zygote's next control line, '' when it ended, or 'timeout'."""
        deadline = time.monotonic() + timeout
        stream = self.process.stdout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            ready, _, _ = select.select([stream], [], [], remaining)
            if ready:
                chunk = os.read(stream.fileno(), 4096)
                if not chunk:
                    return ""
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode().strip()

    def poll_exit(self, timeout: float) -> int | None:
        """Return the child's exit code once the zygote reports it, or None while it runs."""
        if b"\n" not in self._buffer:
            ready, _, _ = select.select([self.process.stdout], [], [], timeout)
            if not ready:
                return None
        line = self.read_line(0.1)
        if line.startswith("exited "):
            return int(line.split()[2])
        if line in ("", "timeout") and self.process.poll() is not None:
            # The zygote itself died (killed by a limit, say); report it as the child's death.
            code = self.process.returncode
            self.stop()
            return code if code < 0 else -9
        return None


def launch_slots(model: ModelSpec, config: GradeConfig, isolation: Isolation, count: int) -> "queue.Queue[Slot]":
    """Create `count` slots and start their workers at once; their imports overlap with the caller's work."""
    slots: queue.Queue[Slot] = queue.Queue()
    for _ in range(count):
        slot = Slot(model, config, isolation)
        slot.launch()
        slots.put(slot)
    return slots


def close_slots(slots: "queue.Queue[Slot]") -> None:
    while not slots.empty():
        slots.get().close()
