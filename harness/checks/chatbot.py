"""chatbot.before_after: replies before and after fine-tuning, scored by chrF against the trained response."""

from __future__ import annotations

import functools
from pathlib import Path

from harness import config
from harness.baseline import Baseline
from harness.checks.common import CheckContext, describe_cell_failure, skipped_for
from harness.records import CheckResult

CHECK_ID = "chatbot.before_after"
METRIC = "chrF (character n-gram F-score, 0-100) of the reply against the trained response"
METRIC_PATH = Path(__file__).resolve().parent.parent / "metrics" / "chrf"


@functools.cache
def chrf_metric():
    import evaluate

    return evaluate.load(str(METRIC_PATH))


def chrf(replies: list[str], reference: str) -> list[float]:
    scores = chrf_metric().compute(predictions=replies, references=[[reference]] * len(replies))
    return [round(score, 2) for score in scores["sentence_scores"]]


def grade(context: CheckContext, finetune: CheckResult, baseline: Baseline) -> CheckResult:
    rubric = context.config.rubric
    points = rubric.points(CHECK_ID)
    skip = skipped_for(context, CHECK_ID, points, needs_model=True)
    if skip:
        return skip

    data = context.probe(CHECK_ID)
    if not data.get("defined"):
        failures = context.failed_cells_for(CHECK_ID)
        if failures:
            return CheckResult(CHECK_ID, "error", 0.0, points,
                               f"`{config.GENERATE_FN}` is not defined because {describe_cell_failure(failures[0])}.")
        return CheckResult(CHECK_ID, "failed", 0.0, points,
                           f"`{config.GENERATE_FN}(input_text)` is not defined; write it so that it returns the "
                           "model's reply as a string.")

    rows = _rows(data, baseline.replies, rubric.response)
    details = {"metric": METRIC, "rows": rows, "response": rubric.response, "required_gain": rubric.min_chrf_gain,
               "max_new_tokens": rubric.max_new_tokens}
    trained = rows[0]
    errors = [row for row in rows if row["after_error"]]
    if errors:
        row = errors[0]
        return CheckResult(CHECK_ID, "error", 0.0, points,
                           f"`{config.GENERATE_FN}({row['prompt']!r})` failed after fine-tuning: "
                           f"{row['after_error'][:300]}", details)

    if finetune.status == "timeout":
        return CheckResult(CHECK_ID, "skipped", 0.0, points,
                           "Not compared: fine-tuning did not finish (see the fine-tuning check), so there is no "
                           "fine-tuned model to compare with.", details)
    if not finetune.details.get("changed_tensors"):
        return CheckResult(CHECK_ID, "skipped", 0.0, points,
                           "Not compared: fine-tuning did not change the model's weights (see the fine-tuning "
                           "check), so the replies after fine-tuning are the replies before it.", details)

    gain = trained["after_chrf"] - trained["before_chrf"]
    details["gain"] = round(gain, 2)
    summary = (f"chrF of the reply to {rubric.prompt!r} against {rubric.response!r} went from "
               f"{trained['before_chrf']:.1f} to {trained['after_chrf']:.1f}")
    if gain >= rubric.min_chrf_gain:
        return CheckResult(CHECK_ID, "passed", points, points,
                           f"After fine-tuning the chatbot answers closer to the trained response: {summary}.", details)
    return CheckResult(CHECK_ID, "failed", 0.0, points,
                       f"The reply did not move towards the trained response: {summary}, a gain of {gain:.1f} "
                       f"where the rubric needs {rubric.min_chrf_gain:g}. Make `{config.GENERATE_FN}` use the "
                       "fine-tuned model and return only the newly generated text.", details)


def _rows(data: dict, baseline_replies: dict[str, str], response: str) -> list[dict]:
    """Build one row per prompt: the untuned model's reply (the grader's baseline) and the submission's reply after."""
    prompts = data["prompts"]
    after = data["after"]
    before = [baseline_replies.get(prompt) for prompt in prompts]
    after_scores = chrf([entry.get("reply") or "" for entry in after], response)
    before_scores = chrf([reply or "" for reply in before], response)
    rows = []
    for position, prompt in enumerate(prompts):
        after_entry = after[position]
        rows.append({
            "prompt": prompt,
            "trained": position == 0,
            "before": before[position],
            "before_chrf": before_scores[position],
            "after": after_entry.get("reply"),
            "after_error": after_entry.get("error"),
            "after_chrf": after_scores[position],
            "changed": before[position] != after_entry.get("reply"),
        })
    return rows
