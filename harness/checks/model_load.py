"""model.load: a causal language model and its tokenizer were loaded."""

from __future__ import annotations

from harness import config
from harness.checks.common import CheckContext, describe_cell_failure, skipped_for
from harness.records import CheckResult

CHECK_ID = "model.load"


def grade(context: CheckContext, model_name: str) -> CheckResult:
    points = context.config.rubric.points(CHECK_ID)
    skip = skipped_for(context, CHECK_ID, points)
    if skip:
        return skip

    data = context.probe(CHECK_ID)
    model, tokenizer = data.get("model"), data.get("tokenizer")
    requested = sorted({entry["requested"] for entry in data.get("requests", [])})
    details = {"model": model, "tokenizer": tokenizer, "requested": requested, "served_by": model_name}
    failures = context.failed_cells_for(CHECK_ID)

    if model is None or tokenizer is None:
        missing = " and ".join(name for name, value in (("model", model), ("tokenizer", tokenizer)) if value is None)
        if failures:
            return CheckResult(CHECK_ID, "error", 0.0, points,
                               f"No {missing} was loaded because {describe_cell_failure(failures[0])}.", details)
        return CheckResult(CHECK_ID, "failed", 0.0, points,
                           f"No {missing} was found after the notebook ran. Load them with "
                           f"AutoTokenizer.from_pretrained(...) and AutoModelForCausalLM.from_pretrained(...) into "
                           f"variables named `{config.TOKENIZER_VAR}` and `{config.MODEL_VAR}`.", details)

    if not model["causal_lm"]:
        return CheckResult(CHECK_ID, "failed", 0.0, points,
                           f"The model is a {model['class']}, which has no language-modelling head and cannot "
                           "generate replies; load it with AutoModelForCausalLM.", details)

    served = f" (your code asked for {', '.join(requested)}; the grader served {model_name})" if requested else ""
    return CheckResult(CHECK_ID, "passed", points, points,
                       f"Loaded {model['class']} ({model['parameters']:,} parameters) from {model['source']} and "
                       f"{tokenizer['class']} from {tokenizer['source']}{served}.", details)
