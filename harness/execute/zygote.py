"""Pre-loaded worker: imports torch, transformers, gradio and the harness once, then forks one child per submission.

Run as `python -m harness.execute.zygote` inside the sandbox of one job slot. It reads `run JOB.json` lines on
stdin and writes `started PID` and `exited PID CODE` lines on stdout. Each child moves its output to the job's FIFO,
closes the control pipes, and runs `harness.execute.worker` on the job. After a child ends, the zygote kills any
process the child left behind and empties the slot's shared scratch folders, so the next submission finds
nothing of the previous one.

Forking a process that has imported torch is safe only if the child sets its thread count before its first torch
operation (the worker does), and the zygote itself never runs a torch operation.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

# Pre-imported for every submission; the import time (several seconds) is paid once per slot.
HEAVY_MODULES = ("numpy", "torch", "transformers", "datasets", "gradio", "gradio_client", "safetensors.torch",
                 "harness.execute.worker", "harness.execute.probes", "harness.execute.shims", "harness.source")


def preload() -> None:
    import importlib

    for name in HEAVY_MODULES:
        importlib.import_module(name)
    # Submodules that transformers loads lazily on first use.
    import transformers

    for name in ("AutoModelForCausalLM", "AutoTokenizer", "Trainer", "TrainingArguments",
                 "DataCollatorForLanguageModeling", "GenerationMixin"):
        getattr(transformers, name)


def run_child(job_path: str, control: tuple[int, int]) -> None:
    """Become the submission process for `job_path`; never returns."""
    try:
        os.setsid()
        job = json.loads(Path(job_path).read_text(encoding="utf-8"))
        for descriptor in control:
            os.close(descriptor)
        output = os.open(job["output_fifo"], os.O_WRONLY)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.close(output)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.environ.clear()
        os.environ.update(job["env"])
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

        from harness.execute import worker

        worker.main([job_path])
    except BaseException:  # noqa: BLE001 - nothing may return into the zygote's loop
        import traceback

        traceback.print_exc()
    os._exit(70)


def kill_leftovers() -> None:
    """Kill every process of this sandbox except the zygote and its ancestors."""
    keep = {os.getpid(), os.getppid(), 1}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) not in keep:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def empty_folder(folder: Path, keep: Path) -> None:
    """Delete what `folder` contains, except the path to `keep` (the slot's own folder may be mounted inside)."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if keep.is_relative_to(entry) or os.path.ismount(entry):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            try:
                entry.unlink()
            except OSError:
                pass


def main() -> None:
    # Control pipes live on descriptors the children close, so student code cannot write to them.
    control_in = os.dup(0)
    control_out = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for descriptor in (0, 1):
        os.dup2(null, descriptor)
    preload()
    scratch = [Path(folder) for folder in os.environ.get("GRADER_SCRATCH", "").split(os.pathsep) if folder]

    reader = os.fdopen(control_in, "rb", buffering=0)
    os.write(control_out, b"ready\n")
    while True:
        line = reader.readline()
        if not line:
            break
        command, _, argument = line.decode().strip().partition(" ")
        if command != "run":
            continue
        pid = os.fork()
        if pid == 0:
            run_child(argument, (control_in, control_out))
        os.write(control_out, f"started {pid}\n".encode())
        _, status = os.waitpid(pid, 0)
        if os.environ.get("GRADER_PID_NAMESPACE"):
            kill_leftovers()
        else:
            # Without a PID namespace of its own, only the child's session can be found and killed.
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for folder in scratch:
            empty_folder(folder, keep=Path.cwd())
        os.write(control_out, f"exited {pid} {os.waitstatus_to_exitcode(status)}\n".encode())
    sys.exit(0)


if __name__ == "__main__":
    main()
