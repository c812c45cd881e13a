"""Grading settings: the rubric (points, thresholds, prompts) and the run limits, each default defined once."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_OUT = Path("reports")
DEFAULT_SEED = 1234

# Names a submission defines, as the assignment requests them.
MODEL_VAR = "model"
TOKENIZER_VAR = "tokenizer"
FINE_TUNE_FN = "fine_tune_model"
GENERATE_FN = "generate_response"
INTERFACE_VAR = "iface"
ENCODE_FN = "encode_text"
DECODE_FN = "decode_tokens"

# Names a final-project submission defines.
PROJECT_FINE_TUNE_FN = "fine_tune_chatbot"
PROJECT_CHAT_FN = "chat_reply"
PROJECT_DATASET_VAR = "PROJECT_DATASET"

EXERCISES = ("1.1", "2.1", "3.1", "4.1", "5.1", "6.1")


RUBRIC_FILE = Path(__file__).resolve().parent / "rubric.toml"
# The documented defaults of every rubric value and limit; `grade --rubric FILE` overrides them key by key.
DEFAULTS = tomllib.loads(RUBRIC_FILE.read_text(encoding="utf-8"))
VISIBILITIES = ("public", "hidden")


@dataclass(frozen=True)
class CheckPolicy:
    """Points of one check and the audience of its details: `public` (everyone) or `hidden` (the instructor only)."""

    points: float
    visibility: str = "public"


def _default_checks() -> dict[str, CheckPolicy]:
    return {check_id: CheckPolicy(float(entry["points"]), entry["visibility"])
            for check_id, entry in DEFAULTS["checks"].items()}


PROJECT_DEFAULTS = DEFAULTS["project"]


@dataclass(frozen=True)
class ProjectRubric:
    """Thresholds and points of the final project (the `[project]` table of the rubric)."""

    min_perplexity_drop: float = PROJECT_DEFAULTS["min_perplexity_drop"]
    max_forgetting: float = PROJECT_DEFAULTS["max_forgetting"]
    examples: int = PROJECT_DEFAULTS["examples"]
    max_new_tokens: int = PROJECT_DEFAULTS["max_new_tokens"]
    discussion_min_words: int = PROJECT_DEFAULTS["discussion_min_words"]
    points: dict[str, float] = field(default_factory=lambda: {
        f"project.{name}": float(value) for name, value in PROJECT_DEFAULTS["points"].items()})

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["points"] = {key.removeprefix("project."): value for key, value in self.points.items()}
        return data


@dataclass(frozen=True)
class Rubric:
    """Rubric: the points, prompts and thresholds the checks apply (documented in `rubric.toml`)."""

    checks: dict[str, CheckPolicy] = field(default_factory=_default_checks)
    prompt: str = DEFAULTS["pair"]["prompt"]
    response: str = DEFAULTS["pair"]["response"]
    other_prompts: tuple[str, ...] = tuple(DEFAULTS["chatbot"]["other_prompts"])
    min_loss_drop: float = DEFAULTS["finetune"]["min_loss_drop"]
    min_chrf_gain: float = DEFAULTS["chatbot"]["min_chrf_gain"]
    max_new_tokens: int = DEFAULTS["chatbot"]["max_new_tokens"]
    min_answer_words: int = DEFAULTS["exercises"]["min_answer_words"]
    project: ProjectRubric = field(default_factory=ProjectRubric)
    # Where the rubric came from, for the reports: a file path, or the built-in defaults.
    source: str = "built-in defaults"

    @property
    def chat_prompts(self) -> tuple[str, ...]:
        return (self.prompt, *self.other_prompts)

    def points(self, check_id: str) -> float:
        if check_id in self.project.points:
            return self.project.points[check_id]
        return self.checks[check_id].points

    def visibility(self, check_id: str) -> str:
        if check_id in self.project.points:
            return "public"
        return self.checks[check_id].visibility

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "pair": {"prompt": self.prompt, "response": self.response},
            "finetune": {"min_loss_drop": self.min_loss_drop},
            "chatbot": {"other_prompts": list(self.other_prompts), "min_chrf_gain": self.min_chrf_gain,
                        "max_new_tokens": self.max_new_tokens},
            "exercises": {"min_answer_words": self.min_answer_words},
            "checks": {check_id: {"points": policy.points, "visibility": policy.visibility}
                       for check_id, policy in self.checks.items()},
            "project": self.project.to_dict(),
        }


@dataclass(frozen=True)
class Limits:
    """Wall-clock limits, in seconds, and resource caps."""

    cell: float = float(DEFAULTS["limits"]["cell_seconds"])
    check: float = float(DEFAULTS["limits"]["check_seconds"])
    submission: float = float(DEFAULTS["limits"]["submission_seconds"])
    # Time a timed-out run gets to stop by itself before it is killed.
    grace: float = 10.0
    # Captured output shown per cell or check in the report, in characters.
    output_chars: int = 4000
    # Output kept per cell or check while the submission runs, in bytes; the rest is counted and dropped.
    output_bytes: int = 256 * 1024
    # Resource caps on a submission process and everything it starts.
    memory_gib: float = float(DEFAULTS["limits"]["memory_gib"])
    processes: int = 256
    file_mib: int = 2048


@dataclass(frozen=True)
class GradeConfig:
    """Options of one grading run, as the CLI sets them."""

    model: str = DEFAULT_MODEL
    out: Path = DEFAULT_OUT
    seed: int = DEFAULT_SEED
    rubric: Rubric = field(default_factory=Rubric)
    limits: Limits = field(default_factory=Limits)
    threads: int | None = None
    # Submissions graded at once; each gets an equal share of the cores unless `threads` is set.
    jobs: int = 1
    # Isolation: auto (the strongest available), bwrap, process (rlimits only) or none (trusted use).
    sandbox: str = "auto"
    # Grade again submissions whose results are already in the output folder.
    force: bool = False
    # Compute the untuned model's baseline again instead of reading it from the cache.
    refresh_baseline: bool = False
    # `cpu` or `cuda`, resolved from --device before grading starts.
    device: str = "cpu"
    # The student's self-check: hidden checks neither run nor reach the submission's process.
    public_only: bool = False

    @property
    def submission_threads(self) -> int:
        """Torch threads per submission: `threads`, or the cores shared among the jobs."""
        if self.threads:
            return self.threads
        return max(1, (os.cpu_count() or 1) // self.jobs)

    def replace(self, **changes) -> "GradeConfig":
        return dataclasses.replace(self, **changes)
