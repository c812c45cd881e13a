"""Isolation of a submission process: a bubblewrap sandbox, cgroup limits and resource limits.

The preferred mechanism is bubblewrap (`bwrap`), which needs no Docker engine. It gives new user, PID, network,
IPC and UTS namespaces and runs as uid 65534 with every capability dropped. Its filesystem view has only Python,
the environment, the harness, the model and the job slot's own folder. Processes and memory are capped by a
cgroup when the machine lets the grader create one, and always by rlimits. Where bubblewrap cannot run, the
grader falls back to a plain process with rlimits and states that in the log and in every report.
"""

from __future__ import annotations

import functools
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

Mode = Literal["auto", "bwrap", "process", "none"]
MODES: tuple[str, ...] = ("auto", "bwrap", "process", "none")

CGROUP_V1 = Path("/sys/fs/cgroup")
CGROUP_V2_UNIFIED = Path("/sys/fs/cgroup/unified")


class SandboxError(RuntimeError):
    """The requested isolation is not available on this machine."""


@dataclass(frozen=True)
class ResourceLimits:
    """Caps on one submission process and everything it starts."""

    memory_bytes: int
    cpu_seconds: int
    file_bytes: int
    processes: int


@dataclass(frozen=True)
class Isolation:
    """The isolation this machine provides, decided once per run."""

    mode: Literal["bwrap", "process", "none"]
    cgroups: bool
    warning: str | None = None

    def describe(self) -> str:
        if self.mode == "bwrap":
            base = "bubblewrap sandbox (no network, private filesystem view, uid 65534, no capabilities)"
        elif self.mode == "process":
            base = "separate process with rlimits only (no filesystem or network isolation)"
        else:
            base = "none: trusted mode, a separate process without limits"
        limits = "; processes and memory capped by a cgroup" if self.cgroups else ""
        return base + limits

    def to_dict(self) -> dict:
        return {"mode": self.mode, "cgroups": self.cgroups, "description": self.describe(), "warning": self.warning}


@functools.cache
def bwrap_works() -> str | None:
    """Return None when bubblewrap can start a sandbox here, else the reason it cannot."""
    executable = shutil.which("bwrap")
    if executable is None:
        return "bwrap is not installed (Debian package bubblewrap)"
    command = [executable, "--unshare-all", "--uid", "65534", "--gid", "65534", "--cap-drop", "ALL",
               "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bwrap failed to start: {error}"
    if result.returncode != 0:
        return f"bwrap cannot create namespaces here: {result.stderr.strip()[:200]}"
    return None


def choose_isolation(mode: Mode) -> Isolation:
    """Return the isolation for `mode`; `auto` takes the strongest one available.

    Raises:
        SandboxError: `mode` is `bwrap` and bubblewrap cannot run here.
    """
    if mode == "none":
        return Isolation(mode="none", cgroups=False)
    cgroups = cgroups_available()
    problem = bwrap_works()
    if problem is None:
        return Isolation(mode="bwrap", cgroups=cgroups)
    if mode == "bwrap":
        raise SandboxError(f"--sandbox=bwrap is not available: {problem}; install bubblewrap or use --sandbox=auto")
    warning = (f"Weaker isolation: {problem}, so submissions run as plain processes with rlimits; they can read "
               "and write the grading user's files and use the network.")
    return Isolation(mode="process", cgroups=cgroups, warning=warning)


def cgroups_available() -> bool:
    if os.geteuid() != 0:
        return False
    return all(os.access(CGROUP_V1 / controller, os.W_OK) for controller in ("pids", "memory"))


class Cgroup:
    """A pair of cgroup v1 groups (pids, memory) for one submission, removed by `close()`."""

    def __init__(self, limits: ResourceLimits):
        name = f"lab-grader-{uuid.uuid4().hex[:12]}"
        self.pids = CGROUP_V1 / "pids" / name
        self.memory = CGROUP_V1 / "memory" / name
        self.pids.mkdir()
        self.memory.mkdir()
        (self.pids / "pids.max").write_text(str(limits.processes))
        (self.memory / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
        self._marks = (0, 0, 0)
        swap = self.memory / "memory.memsw.limit_in_bytes"
        if swap.exists():
            try:
                swap.write_text(str(limits.memory_bytes))
            except OSError:
                pass

    def mark(self) -> None:
        """Remember the counters now, so the hit_* checks report only what happens after this call."""
        self._marks = (self._read(self.pids / "pids.events", "max"), self._read(self.memory / "memory.oom_control", "oom_kill"),
                       self._read(self.memory / "memory.failcnt", None))

    @staticmethod
    def _read(path: Path, key: str | None) -> int:
        try:
            text = path.read_text()
        except OSError:
            return 0
        if key is None:
            return int(text.strip() or 0)
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
        return 0

    def join(self) -> None:
        """Move the calling process into both groups (run in the child before exec)."""
        pid = str(os.getpid())
        (self.pids / "cgroup.procs").write_text(pid)
        (self.memory / "cgroup.procs").write_text(pid)

    def hit_process_limit(self) -> bool:
        return self._read(self.pids / "pids.events", "max") > self._marks[0]

    def hit_memory_limit(self, killed: bool) -> bool:
        """True when the memory limit killed a process since `mark()` (or, without an OOM counter, was reached)."""
        oom_kills = self._read(self.memory / "memory.oom_control", "oom_kill")
        if oom_kills > self._marks[1]:
            return True
        return killed and self._read(self.memory / "memory.failcnt", None) > self._marks[2]

    def kill_all(self) -> None:
        for procs in (self.pids / "cgroup.procs", self.memory / "cgroup.procs"):
            try:
                pids = procs.read_text().split()
            except OSError:
                continue
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass

    def close(self) -> None:
        self.kill_all()
        for group in (self.pids, self.memory):
            for _ in range(50):
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    # Processes killed a moment ago may still be leaving the group.
                    time.sleep(0.05)


def apply_rlimits(limits: ResourceLimits, *, address_space: bool = True) -> None:
    """Set the rlimits of the calling process; its children inherit them.

    With a memory cgroup, `address_space=False` leaves RLIMIT_AS unset: the cgroup counts real memory, while
    an address-space cap also fails the large virtual reservations that torch and Python make.
    """
    if address_space:
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # Not enforced for processes whose real uid is root (the bwrap case), so the cgroup carries the process cap.
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))


def die_with_parent() -> None:
    """Ask the kernel to kill the calling process when the grader dies (Linux PR_SET_PDEATHSIG)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def python_roots() -> list[Path]:
    """Folders the submission's Python needs: the interpreter's installation and the virtual environment."""
    roots = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    executable = Path(sys.executable).resolve()
    if not any(executable.is_relative_to(root) for root in roots):
        roots.add(executable.parent)
    return sorted(roots)


def bwrap_command(*, readable: list[Path], writable: list[Path], workdir: Path, argv: list[str],
                  env: dict[str, str], devices: list[Path] = ()) -> list[str]:
    """Return the bwrap command that runs `argv` with only `readable` (read-only) and `writable` visible."""
    command = [
        shutil.which("bwrap") or "bwrap",
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--uid", "65534",
        "--gid", "65534",
        "--cap-drop", "ALL",
        "--hostname", "sandbox",
        "--ro-bind", "/usr", "/usr",
        "--ro-bind", "/etc", "/etc",
        "--proc", "/proc",
        "--dev", "/dev",
        "--tmpfs", "/tmp",
        "--clearenv",
    ]
    for link in ("bin", "lib", "lib64", "sbin"):
        target = Path("/") / link
        if target.is_symlink():
            command += ["--symlink", os.readlink(target), str(target)]
        elif target.is_dir():
            command += ["--ro-bind", str(target), str(target)]
    for path in readable:
        command += ["--ro-bind", str(path), str(path)]
    for path in writable:
        command += ["--bind", str(path), str(path)]
    for path in devices:
        command += ["--dev-bind", str(path), str(path)]
    # The sandbox's own root (a tmpfs holding the mount points) becomes read-only; the binds keep their modes.
    command += ["--remount-ro", "/"]
    for key, value in env.items():
        command += ["--setenv", key, value]
    command += ["--chdir", str(workdir), *argv]
    return command
