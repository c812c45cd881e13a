"""Check context (the run's outcome and cells) and the shared rules for skipping a check."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from harness.config import GradeConfig
from harness.execute.supervisor import RunOutcome
from harness.records import CellRun, CheckResult
from harness.source import Program

# Source patterns that tie a code cell to the lab part a check grades, so a cell's error or timeout is
# reported on the right check.
PART_PATTERNS = {
    "model.load": re.compile(r"from_pretrained|pipeline\("),
    "tokenization.round_trip": re.compile(r"encode_text|decode_tokens|\.encode\(|\.decode\(|\.tokenize\("),
    "finetune.loss_decreases": re.compile(
        r"Trainer|TrainingArguments|TextDataset|fine_tune|\.train\(|backward\(|optimizer|DataCollator"
    ),
    "chatbot.before_after": re.compile(r"generate_response|\.generate\("),
    "interface.gradio": re.compile(r"gradio|\bgr\.|Interface\(|\.launch\("),
}


@dataclass
class CheckContext:
    """One submission's run, as the checks see it."""

    config: GradeConfig
    program: Program
    outcome: RunOutcome
    cells: list[CellRun]

    def probe(self, check_id: str) -> dict[str, Any]:
        return self.outcome.probes.get(check_id, {})

    def cells_for(self, check_id: str) -> list[CellRun]:
        """The code cells of a check's part: tagged `part:NAME` by the assignment, or whose code looks like it."""
        pattern = PART_PATTERNS.get(check_id)
        if pattern is None:
            return []
        tag = f"part:{check_id.split('.')[0]}"
        code = {cell.index: cell for cell in self.program.code_cells}
        return [cell for cell in self.cells if cell.index in code
                and (tag in code[cell.index].tags or pattern.search(code[cell.index].source))]

    def failed_cells_for(self, check_id: str) -> list[CellRun]:
        return [cell for cell in self.cells_for(check_id) if cell.status in ("error", "timeout", "exit")]

    @property
    def model_loaded(self) -> bool:
        return bool(self.probe("model.load").get("model"))

    @property
    def tokenizer_loaded(self) -> bool:
        return bool(self.probe("model.load").get("tokenizer"))


def describe_cell_failure(cell: CellRun) -> str:
    if cell.status == "timeout":
        text = f"{cell.label} {cell.error}"
    elif cell.status == "exit":
        text = f"{cell.label} called {cell.error} and stopped"
    else:
        text = f"{cell.label} raised {cell.error_type}: {first_line(cell.error)}"
    if cell.hint:
        text += f". {cell.hint}"
    # Callers end the sentence themselves.
    return text.rstrip(".")


def first_line(text: str | None, limit: int = 300) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line[:limit]


def stopped_result(context: CheckContext, check_id: str, points: float) -> CheckResult | None:
    """Return the result for `check_id` when the process stopped before its probe reported, else None."""
    outcome = context.outcome
    if check_id in outcome.probes:
        return None
    step = outcome.stopped_in or "startup"
    if outcome.limit_hit:
        how = f"{outcome.limit_hit} and was stopped"
    elif outcome.kill_reason:
        how = f"was stopped by the grader: it {outcome.kill_reason}"
    elif outcome.exit_code is not None and outcome.exit_code < 0:
        how = f"was killed by signal {-outcome.exit_code}"
    else:
        how = f"ended on its own with exit code {outcome.exit_code} (os._exit or a crash)"

    if step == f"probe-{check_id}":
        status = "timeout" if outcome.kill_reason else "error"
        return CheckResult(check_id, status, 0.0, points,
                           f"While the grader checked this part, the submission process {how}.")

    if step.startswith("cell-"):
        index = int(step.split("-", 1)[1])
        label = f"cell {index}"
        if any(cell.index == index for cell in context.cells_for(check_id)):
            status = "timeout" if outcome.kill_reason else "error"
            return CheckResult(check_id, status, 0.0, points,
                               f"While running {label}, which belongs to this part, the submission process {how}. "
                               "Make that cell finish quickly and let it end normally.")
        return CheckResult(check_id, "skipped", 0.0, points,
                           f"Not checked: while running {label}, the submission process {how}, before the grader "
                           "could inspect this part.")

    where = step.removeprefix("probe-") if step.startswith("probe-") else step
    return CheckResult(check_id, "skipped", 0.0, points,
                       f"Not checked: the submission process {how} during {where}, before this part was reached.")


def skipped_for(context: CheckContext, check_id: str, points: float, *, needs_model: bool = False,
                needs_tokenizer: bool = False) -> CheckResult | None:
    """Return a `skipped` (or timeout/error) result when this check cannot run, else None."""
    stopped = stopped_result(context, check_id, points)
    if stopped:
        return stopped
    if needs_model and not context.model_loaded:
        return CheckResult(check_id, "skipped", 0.0, points,
                           "Not checked: no model was loaded (see the model.load check), so there is nothing to test.")
    if needs_tokenizer and not context.tokenizer_loaded and not context.probe(check_id).get("method") == "helpers":
        return CheckResult(check_id, "skipped", 0.0, points,
                           "Not checked: no tokenizer was loaded (see the model.load check).")
    probe = context.probe(check_id)
    if probe.get("outcome") == "timeout":
        return CheckResult(check_id, "timeout", 0.0, points,
                           f"Your code {probe['error']} while the grader checked this part "
                           f"(limit {probe['limit']:g} s); make it faster, for example by generating fewer tokens.")
    if probe.get("outcome") == "internal_error":
        return CheckResult(check_id, "error", 0.0, points,
                           f"The grader itself failed on this part ({probe.get('error_type')}: "
                           f"{first_line(probe.get('error'))}); this is not your fault, tell your instructor.",
                           {"internal": True, "traceback": probe.get("traceback")})
    return None
