"""Grading settings: the rubric (points, thresholds, prompts) and the run limits, each default defined once."""

from __future__ import annotations

import dataclasses
import os
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

EXERCISES = ("1.1", "2.1", "3.1", "4.1", "5.1", "6.1")


@dataclass(frozen=True)
class Points:
    """Maximum points of each auto-graded check."""

    model_load: float = 10
    tokenization: float = 15
    finetune: float = 25
    chatbot: float = 20
    interface: float = 15
    exercises: float = 15

    def for_check(self, check_id: str) -> float:
        return {
            "model.load": self.model_load,
            "tokenization.round_trip": self.tokenization,
            "finetune.loss_decreases": self.finetune,
            "chatbot.before_after": self.chatbot,
            "interface.gradio": self.interface,
            "exercises.answered": self.exercises,
        }[check_id]


@dataclass(frozen=True)
class Rubric:
    """Rubric: the points, prompts and thresholds the checks apply."""

    points: Points = field(default_factory=Points)
    prompt: str = "Hello, how are you?"
    response: str = "I'm good, thank you."
    # Prompts besides the trained one, asked before and after fine-tuning.
    other_prompts: tuple[str, ...] = (
        "What is your favourite book?",
        "Can you explain what a tokenizer does?",
        "Tell me something interesting about the ocean.",
    )
    # The pair's loss after fine-tuning must be at most (1 - min_loss_drop) times the loss before.
    min_loss_drop: float = 0.25
    # chrF (0-100) of the reply to the trained prompt against the trained response must rise by this much.
    min_chrf_gain: float = 10.0
    # Generation inside a graded run is capped at this many new tokens, whatever the submission requests.
    max_new_tokens: int = 48
    # An exercise answer counts as present with at least this many words.
    min_answer_words: int = 3

    @property
    def chat_prompts(self) -> tuple[str, ...]:
        return (self.prompt, *self.other_prompts)


@dataclass(frozen=True)
class Limits:
    """Wall-clock limits, in seconds."""

    cell: float = 600.0
    check: float = 180.0
    submission: float = 1800.0
    # Time a timed-out run gets to stop by itself before it is killed.
    grace: float = 10.0
    # Captured output shown per cell or check in the report, in characters.
    output_chars: int = 4000
    # Output kept per cell or check while the submission runs, in bytes; the rest is counted and dropped.
    output_bytes: int = 256 * 1024
    # Resource caps on a submission process and everything it starts.
    memory_gib: float = 8.0
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

    @property
    def submission_threads(self) -> int:
        """Torch threads per submission: `threads`, or the cores shared among the jobs."""
        if self.threads:
            return self.threads
        return max(1, (os.cpu_count() or 1) // self.jobs)

    def replace(self, **changes) -> "GradeConfig":
        return dataclasses.replace(self, **changes)
