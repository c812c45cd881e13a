"""Entry point of the process that runs one submission: `python -m harness.execute.worker JOB.json`.

It runs the code cells in order in one namespace, as a notebook kernel would, then runs the probes that
collect what the checks need. Every result goes to `events.jsonl` in the artifacts folder as soon as it is
known, so a crash or a kill loses only the step in progress. Output goes to the grader through a pipe.
"""

from __future__ import annotations

import builtins
import json
import linecache
import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable


class SoftTimeout(BaseException):
    """Raised in the main thread when a cell or probe runs past its limit.

    It derives from BaseException so that a student's `except Exception:` does not swallow it.
    """


class EventLog:
    """Append-only JSON-lines file that the supervising grader reads while this process runs."""

    def __init__(self, path: Path):
        self._file = open(path, "a", encoding="utf-8")

    def write(self, event: str, **data: Any) -> None:
        record = {"event": event, "time": time.time(), **data}
        self._file.write(json.dumps(record, default=repr) + "\n")
        self._file.flush()


class OutputCapture:
    """Marks the start of each step in the combined stdout/stderr, which the grader splits per step."""

    def to(self, name: str) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.write(1, f"\x1e[grader-step {name}]\n".encode())


def run_limited(seconds: float, action: Callable[[], Any]) -> Any:
    """Call `action`, raising SoftTimeout in this thread once `seconds` have passed."""

    def expire(signum, frame):
        raise SoftTimeout(f"did not finish within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return action()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def describe_exception(error: BaseException, limit_to: str | None = None) -> dict[str, str]:
    """Return the exception's type, message and a traceback trimmed to the student's frames."""
    frames = traceback.extract_tb(error.__traceback__)
    if limit_to:
        student = [frame for frame in frames if frame.filename.startswith(limit_to)]
        frames = student or frames[-3:]
    lines = traceback.format_list(frames) + traceback.format_exception_only(type(error), error)
    return {"error_type": type(error).__name__, "error": str(error)[:2000], "traceback": "".join(lines)[-6000:]}


def compile_cell(source: str, filename: str):
    """Compile a cell so that tracebacks show its lines, as a notebook does."""
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    return compile(source, filename, "exec")


def exit_if_forked(worker_pid: int) -> None:
    """End a copy of this process that student code forked, so only the original reports results."""
    if os.getpid() != worker_pid:
        os._exit(0)


def run_cells(job: dict, namespace: dict, events: EventLog, capture: OutputCapture) -> None:
    limit = job["limits"]["cell"]
    worker_pid = os.getpid()
    for cell in job["cells"]:
        index = cell["index"]
        filename = f"<cell {index}>"
        capture.to(f"cell-{index}")
        events.write("cell_start", index=index, limit=limit)
        started = time.monotonic()
        outcome: dict[str, Any] = {"status": "ok"}
        try:
            code = compile_cell(cell["python"], filename)
            run_limited(limit, lambda: exec(code, namespace))
        except SoftTimeout as error:
            outcome = {"status": "timeout", **describe_exception(error, "<cell")}
        except SystemExit as error:
            outcome = {"status": "exit", "error_type": "SystemExit", "error": f"exit({error.code!r})", "traceback": ""}
        except SyntaxError as error:
            outcome = {"status": "error", **describe_exception(error)}
            outcome["traceback"] = "".join(traceback.format_exception_only(type(error), error))
        except BaseException as error:  # noqa: BLE001 - a student's exception is a result, not a crash
            outcome = {"status": "error", **describe_exception(error, "<cell")}
        exit_if_forked(worker_pid)
        events.write("cell_end", index=index, seconds=round(time.monotonic() - started, 3), **outcome)


def main(argv: list[str]) -> None:
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    artifacts = Path(job["artifacts"])
    events = EventLog(artifacts / "events.jsonl")
    capture = OutputCapture()
    capture.to("setup")
    os.chdir(job["workdir"])

    import numpy
    import torch

    torch.set_num_threads(job["threads"])
    random.seed(job["seed"])
    numpy.random.seed(job["seed"])
    torch.manual_seed(job["seed"])

    from harness.execute import probes, shims

    recorder = shims.Recorder(model_dir=job["model_dir"], max_new_tokens=job["probe"]["max_new_tokens"],
                              pair_text=job["probe"]["pair_text"])
    shims.install(recorder)
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}

    def run_python(body: str) -> None:
        from harness.source import rewrite_magics

        exec(compile_cell(rewrite_magics(body)[0], "<cell magic>"), namespace)

    fake_ipython = shims.FakeIPython(recorder, run_python)
    fake_ipython.user_ns = namespace
    namespace["get_ipython"] = lambda: fake_ipython
    events.write("started", pid=os.getpid())

    run_cells(job, namespace, events, capture)
    if job["probe"].get("project"):
        from harness.project import probe as project_probe

        project_probe.run_all(job, namespace, events, capture)
    else:
        probes.run_all(job, namespace, recorder, events, capture)

    events.write("done")
    sys.stdout.flush()
    sys.stderr.flush()
    # Student code may have started threads (a Gradio server, a timer); do not wait for them.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
