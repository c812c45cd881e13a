"""Grade a batch: resolve the model once, run each submission in isolation, check it, write its outputs at once."""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

from harness import __version__, baseline, manual
from harness.checks import chatbot, exercises, finetune, interface, model_load, tokenization
from harness.checks.common import CheckContext, first_line
from harness.checks.diagnose import SHARE_HINT, hint_for
from harness.config import GradeConfig
from harness.device import fit_jobs_to_gpu
from harness.execute.sandbox import choose_isolation
from harness.execute.slots import Slot, close_slots, launch_slots
from harness.execute.supervisor import RunOutcome, run_program
from harness.models import ModelSpec, resolve_model
from harness.records import CHECK_IDS, CellRun, CheckResult, Submission, SubmissionResult
from harness.report import writer
from harness.source import Program, SubmissionError, load_program

logger = logging.getLogger(__name__)

LIBRARIES = ("torch", "transformers", "tokenizers", "datasets", "evaluate", "gradio", "gradio_client", "nbformat")


@dataclass
class BatchResult:
    """All graded submissions of one run, and whether the grader itself failed anywhere."""

    results: list[SubmissionResult] = field(default_factory=list)
    environment: dict = field(default_factory=dict)
    internal_errors: list[str] = field(default_factory=list)


def describe_environment(model: ModelSpec, config: GradeConfig) -> dict:
    versions = {}
    for library in LIBRARIES:
        try:
            versions[library] = metadata.version(library)
        except metadata.PackageNotFoundError:
            versions[library] = "not installed"
    return {
        "harness": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "device": config.device,
        "model": model.to_dict(),
        "seed": config.seed,
        "threads_per_submission": config.submission_threads,
        "libraries": versions,
        "rubric": config.rubric.to_dict(),
        "limits": {"cell_seconds": config.limits.cell, "check_seconds": config.limits.check,
                   "submission_seconds": config.limits.submission},
    }


def grade_batch(submissions: list[Submission], *, config: GradeConfig,
                on_result: Callable[[SubmissionResult], None] | None = None,
                on_start: Callable[[Submission], None] | None = None) -> BatchResult:
    """Grade `submissions` with `config.jobs` concurrent runs, writing each one's outputs as soon as it is graded."""
    isolation = choose_isolation(config.sandbox)
    if isolation.warning:
        logger.warning(isolation.warning)
    model = resolve_model(config.model)
    environment = describe_environment(model, config)
    environment["isolation"] = isolation.to_dict()
    logger.info("grading %d submissions with %s (seed %d, %d jobs)", len(submissions), model.description,
                config.seed, config.jobs)
    if config.device == "cuda":
        config = config.replace(jobs=fit_jobs_to_gpu(config.jobs, model.path))
    # Each slot's worker imports torch, transformers and gradio while the grader loads its baseline.
    slots = launch_slots(model, config, isolation, min(config.jobs, max(len(submissions), 1)))
    try:
        meter = finetune.LossMeter(model.path, config.rubric.prompt, config.rubric.response, config.device)
        reference = baseline.load_or_compute(model, config.rubric, meter.loss, refresh=config.refresh_baseline)
    except BaseException:
        close_slots(slots)
        raise
    meter.base_loss = reference.loss
    environment["baseline"] = {"key": reference.key, "loss": round(reference.loss, 4)}
    logger.info("loss of the trained pair under the original weights: %.4f", meter.base_loss)
    chatbot.chrf_metric()

    batch = BatchResult(environment=environment)
    config.out.mkdir(parents=True, exist_ok=True)
    report_lock = threading.Lock()

    def grade_one(submission: Submission) -> None:
        if on_start:
            on_start(submission)
        fingerprint = submission_fingerprint(submission, environment)
        result = None if config.force else load_previous(config.out, submission, fingerprint)
        if result is not None:
            logger.info("%s: already graded with the same file and settings, reusing its result", submission.id)
        else:
            slot = slots.get()
            try:
                result = grade_submission(submission, model=model, meter=meter, reference=reference, config=config,
                                          environment=environment, slot=slot)
            except Exception:  # noqa: BLE001 - a grader bug on one submission must not lose the others
                logger.exception("the grader failed on submission %s (%s)", submission.id, submission.path)
                result = internal_failure(submission, config, environment)
            finally:
                slots.put(slot)
            result.fingerprint = fingerprint
            for check in result.checks:
                check.visibility = config.rubric.visibility(check.id)
            writer.write_submission(result, config.out)
        with report_lock:
            batch.results.append(result)
            batch.internal_errors.extend(
                f"{result.submission_id}: {check.id}: {check.message}" for check in result.checks
                if check.details.get("internal")
            )
            if on_result:
                on_result(result)

    try:
        with ThreadPoolExecutor(max_workers=config.jobs, thread_name_prefix="grade") as pool:
            for future in [pool.submit(grade_one, submission) for submission in submissions]:
                future.result()
    finally:
        close_slots(slots)
    batch.results.sort(key=lambda result: result.submission_id)
    manual.finish_batch(batch.results, environment, config.out)
    return batch


def submission_fingerprint(submission: Submission, environment: dict) -> str:
    """Hash the submission's bytes with every setting that can change its grade (not the timings)."""
    settings = {key: value for key, value in environment.items() if key not in ("platform",)}
    digest = hashlib.sha256(submission.path.read_bytes())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def load_previous(out: Path, submission: Submission, fingerprint: str) -> SubmissionResult | None:
    """Return the result an earlier run wrote for `submission`, if it was graded from the same file and settings."""
    path = out / submission.id / "result.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if data.get("fingerprint") != fingerprint:
        return None
    try:
        result = SubmissionResult.from_dict(data)
    except (KeyError, TypeError) as error:
        logger.warning("ignoring unreadable earlier result %s: %s", path, error)
        return None
    if any(check.details.get("internal") for check in result.checks):
        # The grader failed on it last time; try again.
        return None
    return result


def grade_submission(submission: Submission, *, model: ModelSpec, meter: finetune.LossMeter,
                     reference: baseline.Baseline, config: GradeConfig, environment: dict,
                     slot: Slot) -> SubmissionResult:
    started = time.monotonic()
    try:
        program = load_program(submission.path)
    except SubmissionError as error:
        return unreadable(submission, str(error), config, environment)

    outcome = None
    try:
        strings = tokenization.PUBLIC_STRINGS if config.public_only else tokenization.HARD_STRINGS
        outcome = run_program(program, model, config, slot, [text for _, text in strings])
        cells = cell_runs(program, outcome, config.limits.output_chars)
        context = CheckContext(config=config, program=program, outcome=outcome, cells=cells)
        checking = time.monotonic()
        checks = run_checks(context, model, meter, reference)
        timings = phase_timings(outcome, cells, time.monotonic() - checking)
        notes = collect_notes(program, outcome, config)
        probe_output = {check_id: outcome.output(f"probe-{check_id}", config.limits.output_chars)
                        for check_id in CHECK_IDS}
    finally:
        if outcome is not None and outcome.artifacts is not None:
            shutil.rmtree(outcome.artifacts.parent, ignore_errors=True)

    result = SubmissionResult(
        submission_id=submission.id,
        path=str(submission.path),
        checks=checks,
        cells=cells,
        magics=program.magics,
        notes=notes,
        exercises=exercises.find_answers(program),
        environment=environment,
        seconds=round(time.monotonic() - started, 2),
        timings=timings,
    )
    if not outcome.finished:
        result.problem = process_problem(outcome)
    for check in result.checks:
        if probe_output.get(check.id):
            check.details.setdefault("output", probe_output[check.id])
    return result


def phase_timings(outcome: RunOutcome, cells: list[CellRun], checks_seconds: float) -> dict[str, float]:
    timings = {"run": round(outcome.seconds, 2), "cells": round(sum(cell.seconds for cell in cells), 2)}
    for check_id, data in outcome.probes.items():
        if "seconds" in data:
            timings[f"probe {check_id}"] = round(data["seconds"], 2)
    timings["checks"] = round(checks_seconds, 2)
    return timings


def run_checks(context: CheckContext, model: ModelSpec, meter: finetune.LossMeter,
               reference: baseline.Baseline) -> list[CheckResult]:
    outcome = context.outcome
    if outcome.last_step == "startup" and not outcome.finished and not outcome.kill_reason:
        # No student code runs before the first cell, so a failure here is the grader's own.
        setup_output = outcome.output("setup", 2000)
        logger.error("the submission process failed before any student code ran:\n%s", setup_output)
        points = context.config.rubric.points
        return [CheckResult(check_id, "error", 0.0, points(check_id),
                            "The grader failed to start the run; this is not your fault, tell your instructor.",
                            {"internal": True, "output": setup_output}) for check_id in CHECK_IDS]
    load = model_load.grade(context, model.name)
    tokens, hidden_tokens = tokenization.grade(context)
    tuning = finetune.grade(context, meter)
    chat = chatbot.grade(context, tuning, reference)
    gradio = interface.grade(context)
    written = exercises.grade(context)
    checks = [load, tokens, hidden_tokens, tuning, chat, gradio, written]
    if context.config.public_only:
        checks = [check for check in checks if context.config.rubric.visibility(check.id) == "public"]
    return checks


def cell_runs(program: Program, outcome: RunOutcome, output_chars: int) -> list[CellRun]:
    runs = []
    for cell in program.code_cells:
        event = outcome.cells.get(cell.index)
        if event is None:
            runs.append(unfinished_cell(cell, outcome, output_chars))
            continue
        runs.append(CellRun(
            index=cell.index,
            label=cell.label,
            status=event["status"],
            seconds=event.get("seconds", 0.0),
            error_type=event.get("error_type"),
            error=event.get("error"),
            traceback=event.get("traceback"),
            hint=hint_for(event.get("error_type"), event.get("error")),
            output=outcome.output(f"cell-{cell.index}", output_chars),
        ))
    return runs


def unfinished_cell(cell, outcome: RunOutcome, output_chars: int) -> CellRun:
    """Describe a cell that reported no end: the one the process stopped in, or one after it."""
    output = outcome.output(f"cell-{cell.index}", output_chars)
    if outcome.stopped_in != f"cell-{cell.index}":
        return CellRun(index=cell.index, label=cell.label, status="not run", output=output)
    if outcome.limit_hit:
        return CellRun(index=cell.index, label=cell.label, status="error", error_type="LimitExceeded",
                       error=f"the submission {outcome.limit_hit}", output=output)
    if outcome.kill_reason:
        return CellRun(index=cell.index, label=cell.label, status="timeout", error=outcome.kill_reason, output=output)
    return CellRun(index=cell.index, label=cell.label, status="error", error_type="ProcessEnded",
                   error=f"the process ended with exit code {outcome.exit_code}", output=output)


def collect_notes(program: Program, outcome: RunOutcome, config: GradeConfig) -> list[str]:
    recorder = outcome.recorder
    notes = []
    requested = sorted({entry["requested"] for entry in recorder.get("requests", [])})
    if requested:
        notes.append(f"from_pretrained({', '.join(requested)}) was served by the grading model {config.model}.")
    if recorder.get("generate_capped"):
        asked = ", ".join(recorder["generate_capped"])
        notes.append(f"Generation was capped at {config.rubric.max_new_tokens} new tokens (the code asked for {asked}).")
    if any(launch.get("share") for launch in recorder.get("launches", [])):
        notes.append(SHARE_HINT)
    if recorder.get("launches"):
        notes.append("launch() was recorded but not started while the notebook ran; the interface check starts it.")
    if recorder.get("colab_calls"):
        notes.append(f"Colab-only calls did nothing here: {', '.join(sorted(set(recorder['colab_calls'])))}.")
    if program.magics:
        notes.append(f"{len(program.magics)} shell or magic lines were not run (listed below).")
    return notes


def process_problem(outcome: RunOutcome) -> str:
    step = outcome.stopped_in or "startup"
    if outcome.limit_hit:
        return f"The submission {outcome.limit_hit} and was stopped during {step}."
    if outcome.kill_reason:
        return f"The grader stopped the submission during {step}: it {outcome.kill_reason}."
    return f"The submission process ended during {step} with exit code {outcome.exit_code}."


def internal_failure(submission: Submission, config: GradeConfig, environment: dict) -> SubmissionResult:
    points = config.rubric.points
    checks = [CheckResult(check_id, "error", 0.0, points(check_id),
                          "The grader itself failed on this submission; this is not your fault, tell your instructor.",
                          {"internal": True}) for check_id in CHECK_IDS]
    return SubmissionResult(submission_id=submission.id, path=str(submission.path), checks=checks,
                            environment=environment, problem="internal grader error (see the grader's log)")


def unreadable(submission: Submission, message: str, config: GradeConfig, environment: dict,
               check_ids: tuple[str, ...] = CHECK_IDS) -> SubmissionResult:
    """Return the result of a submission that could not be read: every check an error that gives `message`."""
    points = config.rubric.points
    checks = [CheckResult(check_id, "error", 0.0, points(check_id), f"Not graded: {message}")
              for check_id in check_ids]
    return SubmissionResult(submission_id=submission.id, path=str(submission.path), checks=checks,
                            environment=environment, problem=first_line(message, 1000))
