"""The untuned model's baseline: the trained pair's loss and the replies to the rubric's prompts.

Every submission is compared with the same baseline, so it is computed once per model, rubric and decoding
settings and kept on disk under the model cache. The cache key hashes everything that can change the numbers
(the model's files, the pair, the prompts, the decoding settings, the library versions), so a change to any of
them computes a new baseline instead of reusing a stale one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from harness import __version__
from harness.config import Rubric
from harness.models import ModelSpec
from harness.models.registry import cache_root

logger = logging.getLogger(__name__)

# Bumped when the way the baseline is computed changes, which invalidates every cached one.
BASELINE_VERSION = 1
# Bytes read from each end of a weights file for the model's fingerprint, so that no gigabytes are read. NOTE: two
# weights files of the same size that differ only in between would share a fingerprint (--recompute-baseline).
FINGERPRINT_BYTES = 1 << 20


@dataclass(frozen=True)
class Decoding:
    """Decoding settings of the grader's requests for a reply: the prompt plus the EOS token, then greedy decoding.

    This is the convention the assignment gives for `generate_response`, so the baseline replies are what a
    submission's chatbot says before fine-tuning.
    """

    max_new_tokens: int
    append_eos: bool = True
    do_sample: bool = False

    @classmethod
    def for_rubric(cls, rubric: Rubric) -> "Decoding":
        return cls(max_new_tokens=rubric.max_new_tokens)


@dataclass
class Baseline:
    """Measurements of the untuned model; `cached` is true when they were read from disk."""

    key: str
    loss: float
    replies: dict[str, str]
    text: str
    seconds: float
    cached: bool = field(default=False, compare=False)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("cached")
        return data


def model_fingerprint(folder: Path) -> str:
    """Hash a model folder's config, tokenizer files, and the size and both ends of each weights file."""
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        digest.update(path.name.encode() + b"\0")
        size = path.stat().st_size
        digest.update(str(size).encode())
        with path.open("rb") as file:
            if size <= 2 * FINGERPRINT_BYTES:
                digest.update(file.read())
            else:
                digest.update(file.read(FINGERPRINT_BYTES))
                file.seek(-FINGERPRINT_BYTES, os.SEEK_END)
                digest.update(file.read(FINGERPRINT_BYTES))
    return digest.hexdigest()


def baseline_key(model: ModelSpec, rubric: Rubric, decoding: Decoding) -> str:
    versions = {}
    for library in ("torch", "transformers", "tokenizers"):
        try:
            versions[library] = metadata.version(library)
        except metadata.PackageNotFoundError:
            versions[library] = None
    parts = {
        "version": BASELINE_VERSION,
        "harness": __version__,
        "model": model_fingerprint(model.path),
        "prompt": rubric.prompt,
        "response": rubric.response,
        "prompts": list(rubric.chat_prompts),
        "decoding": asdict(decoding),
        "libraries": versions,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def reply(model, tokenizer, prompt: str, decoding: Decoding) -> str:
    """Return the model's reply to `prompt` under `decoding`: the new tokens only, special tokens removed."""
    import torch

    text = prompt.strip() + ((tokenizer.eos_token or "") if decoding.append_eos else "")
    prompt_ids = tokenizer(text, return_tensors="pt")["input_ids"].to(model.device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.no_grad():
        output = model.generate(prompt_ids, attention_mask=torch.ones_like(prompt_ids), do_sample=decoding.do_sample,
                                max_new_tokens=decoding.max_new_tokens, pad_token_id=pad)
    return tokenizer.decode(output[0, prompt_ids.shape[-1]:], skip_special_tokens=True).strip()


def compute(model: ModelSpec, rubric: Rubric, decoding: Decoding, key: str, loss_of) -> Baseline:
    """Load the untuned model, measure the pair's loss with `loss_of(model)` and ask it every rubric prompt."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(model.path)
    untuned = AutoModelForCausalLM.from_pretrained(model.path)
    untuned.eval()
    loss = loss_of(untuned)
    replies = {prompt: reply(untuned, tokenizer, prompt, decoding) for prompt in rubric.chat_prompts}
    return Baseline(key=key, loss=loss, replies=replies, text=rubric.prompt + "\n" + rubric.response,
                    seconds=round(time.monotonic() - started, 2))


def load_or_compute(model: ModelSpec, rubric: Rubric, loss_of, *, folder: Path | None = None,
                    refresh: bool = False) -> Baseline:
    """Return the cached baseline for this model, rubric and decoding, computing and storing it when missing."""
    decoding = Decoding.for_rubric(rubric)
    key = baseline_key(model, rubric, decoding)
    folder = folder or cache_root() / "baselines"
    path = folder / f"{key}.json"
    if not refresh:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            baseline = Baseline(**data, cached=True)
        except (OSError, json.JSONDecodeError, TypeError):
            baseline = None
        if baseline is not None and baseline.key == key:
            logger.info("baseline of %s read from %s", model.name, path)
            return baseline
    baseline = compute(model, rubric, decoding, key, loss_of)
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{key}.", dir=folder)
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        json.dump(baseline.to_dict(), file, indent=2, ensure_ascii=False)
    os.replace(temporary, path)
    logger.info("baseline of %s computed in %.1f s and stored in %s", model.name, baseline.seconds, path)
    return baseline
