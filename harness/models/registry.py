"""Resolve a `--model` name (built-in, local folder or hub id) to a folder of safetensors weights and tokenizer files."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

logger = logging.getLogger(__name__)

BUILTIN_ALIASES = {
    "default": "smollm2-135m-instruct",
    "smollm2": "smollm2-135m-instruct",
    "smollm2-135m-instruct": "smollm2-135m-instruct",
    "tiny-gpt2": "tiny-gpt2",
    "tiny-llama": "tiny-llama",
}


class UnknownModelError(ValueError):
    """A `--model` value that names no built-in model, no local folder and no loadable hub repository."""


@dataclass(frozen=True)
class ModelSpec:
    """A model ready to load offline: `path` contains config, weights and tokenizer files."""

    name: str
    path: Path
    description: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "path": str(self.path), "description": self.description}


def cache_root() -> Path:
    """Return the folder that contains converted and built models (`LAB_GRADER_CACHE`, else the user cache)."""
    configured = os.environ.get("LAB_GRADER_CACHE")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lab-grader"


def offline_choices() -> str:
    return "smollm2-135m-instruct (the default), tiny-gpt2, tiny-llama, or a local model folder"


def resolve_model(name: str) -> ModelSpec:
    """Return the local model folder for `name`, building or converting it into the cache on first use.

    Raises:
        UnknownModelError: `name` is not built in, not a folder, and not a hub repository that can be loaded.
    """
    builtin = BUILTIN_ALIASES.get(name.lower())
    if builtin == "smollm2-135m-instruct":
        from harness.models import smollm2

        return smollm2.ensure_converted()
    if builtin in ("tiny-gpt2", "tiny-llama"):
        from harness.models import tiny

        return tiny.ensure_built(builtin)

    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise UnknownModelError(
                f"model folder {folder} has no config.json; pass a folder written by save_pretrained, "
                f"or one of: {offline_choices()}"
            )
        return ModelSpec(name=name, path=folder.resolve(), description=f"local folder {folder.resolve()}")
    return _resolve_hub_id(name)


def _resolve_hub_id(repo_id: str) -> ModelSpec:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    patterns = ["*.json", "*.safetensors", "*.bin", "*.txt", "*.model", "*.jinja"]
    try:
        path = snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True)
        return ModelSpec(name=repo_id, path=Path(path), description=f"{repo_id} from the local Hugging Face cache")
    except HFValidationError as error:
        raise UnknownModelError(
            f"model {repo_id!r} is neither a folder nor a valid hub id ({error}); "
            f"use one of: {offline_choices()}"
        ) from None
    except Exception as error:  # noqa: BLE001 - any cache miss falls through to the online attempt
        logger.info("model %s is not in the local Hugging Face cache: %s", repo_id, error)

    try:
        path = snapshot_download(repo_id, allow_patterns=patterns)
    except Exception as error:  # noqa: BLE001 - offline, unknown repository and gated repository all end here
        raise UnknownModelError(
            f"model {repo_id!r} is not in the local Hugging Face cache and could not be downloaded "
            f"({type(error).__name__}); this machine may be offline. Offline choices: {offline_choices()}"
        ) from None
    return ModelSpec(name=repo_id, path=Path(path), description=f"{repo_id} downloaded from the Hugging Face hub")


def cached_folder(key_parts: dict, name: str, build: Callable[[Path], None]) -> Path:
    """Return the cache folder for `name` and `key_parts`, calling `build(folder)` once to fill it.

    The folder name carries a hash of `key_parts`, so a change of any part builds a new copy. The build writes
    into a temporary folder that is renamed into place, so an interrupted build never leaves a partial copy.
    """
    digest = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:12]
    root = cache_root() / "models"
    target = root / f"{name}-{digest}"
    if (target / "config.json").is_file():
        return target

    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        build(staging)
        (staging / "grader-cache-key.json").write_text(json.dumps(key_parts, indent=2, sort_keys=True))
        try:
            staging.rename(target)
        except OSError:
            # Another grader finished the same build first; its copy is equivalent.
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
