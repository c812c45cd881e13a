"""Result records shared by the runner, the checks and the reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Status = Literal["passed", "failed", "error", "timeout", "skipped"]
STATUSES: tuple[Status, ...] = ("passed", "failed", "error", "timeout", "skipped")

CHECK_IDS = (
    "model.load",
    "tokenization.round_trip",
    "tokenization.hidden",
    "finetune.loss_decreases",
    "chatbot.before_after",
    "interface.gradio",
    "exercises.answered",
)

# Checks of the final project, graded by `grade project`.
PROJECT_CHECK_IDS = ("project.chat", "project.improvement", "project.forgetting", "project.discussion")

CHECK_TITLES = {
    "project.chat": "Chat function uses the model it is given",
    "project.improvement": "Fine-tuning improves the held-out dialogues",
    "project.forgetting": "General English is not forgotten",
    "project.discussion": "Written discussion",
    "model.load": "Model and tokenizer loaded",
    "tokenization.round_trip": "Tokenization round trip",
    "tokenization.hidden": "Tokenization round trip, hidden strings",
    "finetune.loss_decreases": "Fine-tuning lowers the loss",
    "chatbot.before_after": "Chatbot before and after fine-tuning",
    "interface.gradio": "Gradio interface",
    "exercises.answered": "Written exercises answered",
}


@dataclass(frozen=True)
class Submission:
    """One student's work: a notebook or script, found on disk."""

    id: str
    path: Path

    @property
    def kind(self) -> str:
        return "notebook" if self.path.suffix == ".ipynb" else "script"


@dataclass
class CheckResult:
    """Outcome of one check on one submission."""

    id: str
    status: Status
    score: float
    max_score: float
    message: str
    # Structured evidence for the report (tables, numbers); plain JSON data.
    details: dict[str, Any] = field(default_factory=dict)
    # `public`: students see everything; `hidden`: students see the title and the status only.
    visibility: str = "public"

    @property
    def title(self) -> str:
        return CHECK_TITLES[self.id]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CellRun:
    """Outcome of one code cell of a submission."""

    index: int
    label: str
    status: Literal["ok", "error", "timeout", "exit", "not run"]
    seconds: float = 0.0
    error_type: str | None = None
    error: str | None = None
    traceback: str | None = None
    hint: str | None = None
    output: str = ""


@dataclass
class SubmissionResult:
    """Everything graded about one submission; totals are derived from the checks."""

    submission_id: str
    path: str
    checks: list[CheckResult]
    cells: list[CellRun] = field(default_factory=list)
    magics: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    exercises: dict[str, str | None] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    # Wall seconds by phase: `cells` (the notebook's own code), `probe <check>` (the grader's calls into the
    # submission), `run` (the whole submission process) and `checks` (the grader's own measurements).
    timings: dict[str, float] = field(default_factory=dict)
    # Final project only: per-model measurements and sample replies.
    project: dict[str, Any] = field(default_factory=dict)
    # Scores entered by hand for the written exercises (`manual_scores.csv`): {"scores": {...}, "comment": ...}.
    manual: dict[str, Any] = field(default_factory=dict)
    # Set when the submission could not be read or run at all.
    problem: str | None = None
    # Hash of the submission file and the grading settings; a result with the same one need not be graded again.
    fingerprint: str = ""

    @property
    def score(self) -> float:
        return round(sum(check.score for check in self.checks), 2)

    @property
    def max_score(self) -> float:
        return round(sum(check.max_score for check in self.checks), 2)

    @property
    def percent(self) -> float:
        return round(100 * self.score / self.max_score, 1) if self.max_score else 0.0

    def get_check(self, check_id: str) -> CheckResult | None:
        return next((check for check in self.checks if check.id == check_id), None)

    def check(self, check_id: str) -> CheckResult:
        for check in self.checks:
            if check.id == check_id:
                return check
        raise KeyError(check_id)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(score=self.score, max_score=self.max_score, percent=self.percent)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SubmissionResult":
        """Rebuild a result written by `to_dict` (derived totals are recomputed, not read)."""
        fields = {key: value for key, value in data.items() if key not in ("score", "max_score", "percent")}
        fields["checks"] = [CheckResult(**check) for check in data["checks"]]
        fields["cells"] = [CellRun(**cell) for cell in data.get("cells", [])]
        return cls(**fields)
