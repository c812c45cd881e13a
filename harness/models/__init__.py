"""The model every submission is graded with, resolved to a local folder that `from_pretrained` loads offline."""

from harness.models.registry import ModelSpec, UnknownModelError, offline_choices, resolve_model

__all__ = ["ModelSpec", "UnknownModelError", "offline_choices", "resolve_model"]
