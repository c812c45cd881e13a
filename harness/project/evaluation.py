"""The grader's own measurements for the final project: perplexities and reply overlap, before and after.

Perplexity is exp(mean cross-entropy per predicted token) over a set of texts, in the grading model's
tokenization: the held-out dialogues (what fine-tuning should improve) and the general text the project ships
(what it should not forget). Reply overlap compares the chatbot's replies to the held-out reference replies with
chrF, BLEU and ROUGE-L, loaded by path through `evaluate`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path

from harness.baseline import model_fingerprint
from harness.models import ModelSpec
from harness.models.registry import cache_root
from harness.project.dataset import dialogue_to_text, evaluation_examples, general_text, load_dialogues

logger = logging.getLogger(__name__)

METRICS_DIR = Path(__file__).resolve().parent.parent / "metrics"
METRIC_NAMES = ("chrf", "bleu", "rouge")
METRIC_TITLES = {"chrf": "chrF", "bleu": "BLEU", "rouge": "ROUGE-L"}
# Tokens per block of the general text; each block is scored on its own.
BLOCK_TOKENS = 256
BASELINE_VERSION = 1


@functools.cache
def metric(name: str):
    import evaluate

    return evaluate.load(str(METRICS_DIR / name))


def overlap(replies: list[str | None], references: list[str]) -> dict[str, float]:
    """Corpus chrF, BLEU and ROUGE-L (0-100) of `replies` against `references`; a missing reply counts as empty."""
    predictions = [reply or "" for reply in replies]
    scores = {}
    for name in METRIC_NAMES:
        result = metric(name).compute(predictions=predictions, references=[[reference] for reference in references])
        scores[name] = round(float(result["score"]), 2)
    return scores


def held_out_examples(count: int) -> list[dict]:
    """`count` held-out bot turns spread evenly over the split, so every dialogue style is asked."""
    examples = evaluation_examples(load_dialogues(split="heldout"))
    if count >= len(examples):
        return examples
    step = len(examples) / count
    return [examples[int(index * step)] for index in range(count)]


class PerplexityMeter:
    """Perplexity of a model on the held-out dialogues and on the general text, in the grading tokenization."""

    def __init__(self, model: ModelSpec, device: str = "cpu"):
        from transformers import AutoTokenizer

        self.model = model
        self.device = device
        tokenizer = AutoTokenizer.from_pretrained(model.path)
        eos = tokenizer.eos_token or ""
        held_out = [dialogue_to_text(record, eos) for record in load_dialogues(split="heldout")]
        self.held_out = [tokenizer(text)["input_ids"] for text in held_out]
        general = tokenizer(general_text())["input_ids"]
        self.general = [general[start:start + BLOCK_TOKENS] for start in range(0, len(general), BLOCK_TOKENS)
                        if len(general[start:start + BLOCK_TOKENS]) > 1]

    def perplexity(self, model, sequences: list[list[int]]) -> float:
        import torch

        model.eval()
        model.to(self.device)
        total, count = 0.0, 0
        with torch.no_grad():
            for ids in sequences:
                tensor = torch.tensor([ids], device=self.device)
                loss = float(model(input_ids=tensor, labels=tensor).loss)
                total += loss * (len(ids) - 1)
                count += len(ids) - 1
        return round(math.exp(total / count), 4) if count else float("nan")

    def measure(self, model) -> dict[str, float]:
        return {"held_out": self.perplexity(model, self.held_out), "general": self.perplexity(model, self.general)}

    def baseline(self, refresh: bool = False) -> dict[str, float]:
        """Return the untuned model's perplexities, cached on disk per model and data."""
        digest = hashlib.sha256(json.dumps({
            "version": BASELINE_VERSION, "model": model_fingerprint(self.model.path), "held_out": self.held_out,
            "general": self.general, "device": self.device,
        }).encode()).hexdigest()[:32]
        folder = cache_root() / "project-baselines"
        path = folder / f"{digest}.json"
        if not refresh and path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
        from transformers import AutoModelForCausalLM

        started = time.monotonic()
        values = self.measure(AutoModelForCausalLM.from_pretrained(self.model.path))
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{digest}.", dir=folder)
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(values, file)
        os.replace(temporary, path)
        logger.info("project baseline of %s computed in %.1f s", self.model.name, time.monotonic() - started)
        return values
