"""Grade final projects: run each submission in the sandbox once per model, measure before and after, score.

The first model is the graded one; further models (`--model` repeated) add rows to the comparison table
without changing the score.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from harness import config as contract
from harness import manual
from harness.checks.common import first_line
from harness.checks.finetune import LossMeter, WeightsError
from harness.config import GradeConfig
from harness.execute.sandbox import choose_isolation
from harness.execute.slots import close_slots, launch_slots
from harness.execute.supervisor import RunOutcome, run_program
from harness.grading import BatchResult, cell_runs, describe_environment, process_problem, unreadable
from harness.models import resolve_model
from harness.project.evaluation import PerplexityMeter, held_out_examples, overlap
from harness.project.probe import WEIGHTS
from harness.records import PROJECT_CHECK_IDS, CheckResult, Submission, SubmissionResult
from harness.report import writer
from harness.source import Program, SubmissionError, load_program

logger = logging.getLogger(__name__)

DISCUSSION = re.compile(r"^[\s#>*_]*discussion\b[\s*_:.]*", re.I | re.M)
HEADING = re.compile(r"^\s{0,3}#{1,6}\s", re.M)
# The assignment's placeholder, which counts as no discussion.
PLACEHOLDER = re.compile(r"your answer here", re.I)


def grade_projects(submissions: list[Submission], *, config: GradeConfig, models: list[str],
                   on_result: Callable[[SubmissionResult], None] | None = None) -> BatchResult:
    """Grade every submission's final project with each of `models`; the first one gives the score."""
    isolation = choose_isolation(config.sandbox)
    if isolation.warning:
        logger.warning(isolation.warning)
    project = config.rubric.project
    run_config = config.replace(rubric=dataclasses.replace(config.rubric, max_new_tokens=project.max_new_tokens))
    examples = held_out_examples(project.examples)
    specs = [resolve_model(name) for name in models]
    environment = describe_environment(specs[0], config)
    environment["isolation"] = isolation.to_dict()
    environment["models"] = [spec.to_dict() for spec in specs]
    config.out.mkdir(parents=True, exist_ok=True)

    programs: dict[str, Program | str] = {}
    for submission in submissions:
        try:
            programs[submission.id] = load_program(submission.path)
        except SubmissionError as error:
            programs[submission.id] = str(error)
    evaluations: dict[str, dict[str, dict]] = {submission.id: {} for submission in submissions}
    runs: dict[str, tuple[RunOutcome, float]] = {}

    contexts = [example["context"] for example in examples]
    for spec in specs:
        slots = launch_slots(spec, run_config, isolation, min(config.jobs, max(len(submissions), 1)))
        try:
            meter = PerplexityMeter(spec, config.device)
            base = meter.baseline(refresh=config.refresh_baseline)
            weights = LossMeter(spec.path, config.rubric.prompt, config.rubric.response, config.device)
            # Loading a returned model for the perplexities keeps a full copy in memory, so one at a time.
            measuring = threading.Lock()

            def run_one(submission: Submission, spec=spec, meter=meter, base=base, weights=weights,
                        measuring=measuring) -> None:
                program = programs[submission.id]
                if isinstance(program, str):
                    return
                slot = slots.get()
                started = time.monotonic()
                try:
                    outcome = run_program(program, spec, run_config, slot, [],
                                          project={"contexts": contexts, "seed": config.seed})
                finally:
                    slots.put(slot)
                try:
                    with measuring:
                        evaluation = evaluate_run(outcome, base, meter, weights, examples)
                finally:
                    shutil.rmtree(outcome.artifacts.parent, ignore_errors=True)
                evaluations[submission.id][spec.name] = evaluation
                if spec is specs[0]:
                    runs[submission.id] = (outcome, time.monotonic() - started)
                logger.info("%s with %s: %s", submission.id, spec.name, evaluation["summary"])

            with ThreadPoolExecutor(max_workers=config.jobs, thread_name_prefix="project") as pool:
                for future in [pool.submit(run_one, submission) for submission in submissions]:
                    future.result()
        finally:
            close_slots(slots)

    batch = BatchResult(environment=environment)
    for submission in submissions:
        program = programs[submission.id]
        if isinstance(program, str):
            result = unreadable(submission, program, config, environment, PROJECT_CHECK_IDS)
        else:
            outcome, seconds = runs[submission.id]
            result = build_result(submission, program, outcome, evaluations[submission.id], specs[0].name,
                                  examples, config, environment, seconds)
        writer.write_submission(result, config.out)
        batch.results.append(result)
        if on_result:
            on_result(result)
    batch.results.sort(key=lambda result: result.submission_id)
    manual.finish_batch(batch.results, environment, config.out)
    return batch


def evaluate_run(outcome: RunOutcome, base: dict, meter: PerplexityMeter, weights: LossMeter,
                 examples: list[dict]) -> dict:
    """Everything measured about one run with one model: probe data, perplexities, overlap metrics."""
    probes = {name: outcome.probes.get(name, {}) for name in
              ("project.setup", "project.before", "project.finetune", "project.after")}
    references = [example["reference"] for example in examples]
    before = [entry.get("reply") for entry in probes["project.before"].get("replies", [])]
    after = [entry.get("reply") for entry in probes["project.after"].get("replies", [])]
    evaluation: dict = {
        "probes": probes,
        "perplexity_before": base,
        "perplexity_after": None,
        "changed_tensors": None,
        "metrics_before": overlap(before, references) if before else None,
        "metrics_after": overlap(after, references) if after else None,
        "replies_before": before,
        "replies_after": after,
    }
    if probes["project.finetune"].get("returned") == "model":
        try:
            tuned = weights.load_exported(outcome.artifacts / WEIGHTS)
        except WeightsError as error:
            evaluation["weights_error"] = str(error)
        else:
            evaluation["changed_tensors"] = weights.changed_tensors(tuned)
            evaluation["perplexity_after"] = meter.measure(tuned)
            del tuned
    after_ppl = evaluation["perplexity_after"]
    evaluation["summary"] = (f"held-out perplexity {base['held_out']:.2f} -> "
                             f"{after_ppl['held_out']:.2f}" if after_ppl else "no fine-tuned model")
    return evaluation


def build_result(submission: Submission, program: Program, outcome: RunOutcome, evaluations: dict[str, dict],
                 primary: str, examples: list[dict], config: GradeConfig, environment: dict,
                 seconds: float) -> SubmissionResult:
    evaluation = evaluations[primary]
    cells = cell_runs(program, outcome, config.limits.output_chars)
    checks = [chat_check(evaluation, config), improvement_check(evaluation, outcome, config),
              forgetting_check(evaluation, config), discussion_check(program, config)]
    for check in checks:
        check.visibility = "public"
    samples = []
    for index, example in enumerate(examples):
        samples.append({**example,
                        "before": _at(evaluation["replies_before"], index),
                        "after": _at(evaluation["replies_after"], index)})
    result = SubmissionResult(
        submission_id=submission.id,
        path=str(submission.path),
        checks=checks,
        cells=cells,
        magics=program.magics,
        environment=environment,
        seconds=round(seconds, 2),
        timings={f"probe {name}": data.get("seconds", 0.0) for name, data in evaluation["probes"].items()},
        project={"primary": primary, "samples": samples,
                 "models": {name: _table_row(value) for name, value in evaluations.items()}},
    )
    if not outcome.finished:
        result.problem = process_problem(outcome)
    return result


def _at(values: list, index: int):
    return values[index] if index < len(values) else None


def _table_row(evaluation: dict) -> dict:
    return {key: evaluation[key] for key in ("perplexity_before", "perplexity_after", "metrics_before",
                                             "metrics_after", "changed_tensors")}


def chat_check(evaluation: dict, config: GradeConfig) -> CheckResult:
    check_id = "project.chat"
    points = config.rubric.points(check_id)
    setup = evaluation["probes"]["project.setup"]
    if not setup.get("chat_defined"):
        return CheckResult(check_id, "failed", 0.0, points,
                           f"`{contract.PROJECT_CHAT_FN}(model, tokenizer, context)` is not defined; write it so "
                           "that it returns the model's reply to the dialogue so far as a string.")
    for phase in ("before", "after"):
        probe = evaluation["probes"][f"project.{phase}"]
        if probe.get("outcome") == "timeout":
            return CheckResult(check_id, "timeout", 0.0, points,
                               f"Answering the held-out contexts {phase} fine-tuning {probe['error']}.")
        errors = [entry["error"] for entry in probe.get("replies", []) if entry.get("error")]
        if errors:
            return CheckResult(check_id, "error", 0.0, points,
                               f"`{contract.PROJECT_CHAT_FN}` failed {phase} fine-tuning: {errors[0][:300]}")
    before, after = evaluation["replies_before"], evaluation["replies_after"]
    details = {"replies": len(before)}
    if evaluation.get("changed_tensors") and after and before == after:
        return CheckResult(check_id, "failed", 0.0, points,
                           f"The fine-tuned model changed {evaluation['changed_tensors']} weight tensors, yet all "
                           f"{len(after)} replies are identical before and after: `{contract.PROJECT_CHAT_FN}` "
                           "ignores the model it is given. Generate the reply with the `model` argument.", details)
    if not after:
        return CheckResult(check_id, "skipped", 0.0, points,
                           "Not checked: there is no fine-tuned model to ask (see the improvement check).", details)
    changed = sum(1 for old, new in zip(before, after) if old != new)
    return CheckResult(check_id, "passed", points, points,
                       f"`{contract.PROJECT_CHAT_FN}` answered all {len(after)} held-out contexts before and after "
                       f"fine-tuning; {changed} replies changed.", details)


def improvement_check(evaluation: dict, outcome: RunOutcome, config: GradeConfig) -> CheckResult:
    check_id = "project.improvement"
    points = config.rubric.points(check_id)
    project = config.rubric.project
    probes = evaluation["probes"]
    setup, tuning = probes["project.setup"], probes["project.finetune"]

    # Problems that stop fine-tuning from running or returning a model.
    if setup.get("outcome") not in (None, "ok"):
        return CheckResult(check_id, "error", 0.0, points, f"The grader could not prepare the run: "
                                                           f"{setup.get('error', setup.get('outcome'))}.")
    dataset = setup.get("dataset", {})
    if dataset.get("error"):
        return CheckResult(check_id, "error", 0.0, points,
                           f"Your own dataset ({contract.PROJECT_DATASET_VAR}) is malformed: {dataset['error'][:600]}")
    if not setup.get("fine_tune_defined"):
        return CheckResult(check_id, "failed", 0.0, points,
                           f"`{contract.PROJECT_FINE_TUNE_FN}(model, tokenizer, dataset)` is not defined; write it "
                           "so that it fine-tunes the model on the dialogues and returns it.")
    if tuning.get("outcome") == "timeout":
        return CheckResult(check_id, "timeout", 0.0, points,
                           f"`{contract.PROJECT_FINE_TUNE_FN}` {tuning['error']}; train for fewer steps.")
    if tuning.get("outcome") == "student_error":
        return CheckResult(check_id, "error", 0.0, points,
                           f"`{contract.PROJECT_FINE_TUNE_FN}` raised {tuning['error_type']}: {tuning['error'][:300]}")
    if tuning.get("outcome") not in (None, "ok") or not tuning:
        reason = process_problem(outcome) if not outcome.finished else tuning.get("error", "it did not run")
        return CheckResult(check_id, "error", 0.0, points, f"Fine-tuning did not finish: {first_line(reason, 300)}")
    if tuning.get("returned") != "model":
        return CheckResult(check_id, "failed", 0.0, points,
                           f"`{contract.PROJECT_FINE_TUNE_FN}` returned {tuning.get('returned')}, not the model; "
                           "return the fine-tuned model.")
    if evaluation.get("weights_error"):
        return CheckResult(check_id, "error", 0.0, points,
                           f"The grader could not load the returned model: {evaluation['weights_error']}.")

    # A model came back: compare the grader's perplexities before and after.
    before = evaluation["perplexity_before"]["held_out"]
    after = evaluation["perplexity_after"]["held_out"]
    details = {"before": before, "after": after, "required_drop": project.min_perplexity_drop}
    if not evaluation["changed_tensors"]:
        return CheckResult(check_id, "failed", 0.0, points,
                           "The returned model has the pretrained weights: no training happened. Train on the "
                           "dialogues (for example with Trainer) before returning the model.", details)
    drop = (before - after) / before if before > 0 and math.isfinite(after) else 0.0
    details["drop"] = round(drop, 4)
    summary = f"held-out perplexity went from {before:.2f} to {after:.2f} ({100 * drop:.0f}% lower)"
    if drop >= project.min_perplexity_drop:
        return CheckResult(check_id, "passed", points, points, f"Fine-tuning improved the chatbot: {summary}, "
                                                               "measured by the grader.", details)
    return CheckResult(check_id, "failed", 0.0, points,
                       f"The model changed, but {summary}; the rubric needs at least "
                       f"{100 * project.min_perplexity_drop:.0f}% lower. Train on the dialogue text for more steps or "
                       "with a larger learning rate.", details)


def forgetting_check(evaluation: dict, config: GradeConfig) -> CheckResult:
    check_id = "project.forgetting"
    points = config.rubric.points(check_id)
    limit = config.rubric.project.max_forgetting
    if not evaluation.get("changed_tensors"):
        return CheckResult(check_id, "skipped", 0.0, points,
                           "Not measured: there is no fine-tuned model with changed weights.")
    before = evaluation["perplexity_before"]["general"]
    after = evaluation["perplexity_after"]["general"]
    rise = (after - before) / before if before > 0 and math.isfinite(after) else math.inf
    details = {"before": before, "after": after, "rise": round(rise, 4), "allowed_rise": limit}
    summary = f"perplexity on the general text went from {before:.2f} to {after:.2f} ({100 * rise:+.0f}%)"
    if rise <= limit:
        return CheckResult(check_id, "passed", points, points, f"The model kept its general English: {summary}.",
                           details)
    return CheckResult(check_id, "failed", 0.0, points,
                       f"The model forgot general English: {summary}, more than the {100 * limit:.0f}% the rubric "
                       "allows. Train for fewer steps or with a smaller learning rate.", details)


def discussion_check(program: Program, config: GradeConfig) -> CheckResult:
    """Find the written discussion: the text after a `Discussion` heading or marker, up to the next heading."""
    check_id = "project.discussion"
    points = config.rubric.points(check_id)
    minimum = config.rubric.project.discussion_min_words
    text = ""
    for cell in program.cells:
        if cell.kind != "markdown":
            continue
        match = DISCUSSION.search(cell.source)
        if match:
            rest = cell.source[match.end():]
            following = HEADING.search(rest)
            text = (rest[:following.start()] if following else rest).strip()
            break
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S).replace("**Discussion:**", " ").strip()
    if PLACEHOLDER.search(text):
        text = ""
    words = len(text.split())
    details = {"answers": {"discussion": text or None}, "missing": [] if words >= minimum else ["discussion"],
               "words": words}
    if words >= minimum:
        return CheckResult(check_id, "passed", points, points,
                           f"A discussion of {words} words was found; it is marked by hand.", details)
    return CheckResult(check_id, "failed", 0.0, points,
                       f"No discussion of at least {minimum} words was found ({words} words). Add a markdown cell "
                       "with a `## Discussion` heading that compares the chatbot before and after fine-tuning.",
                       details)
