"""The built-in models: deterministic, offline, and lossless tokenizers."""

from __future__ import annotations

import hashlib

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness.checks.tokenization import HARD_STRINGS
from harness.models import resolve_model
from harness.models.tiny import SPECS, build_tokenizer


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_tiny_model_deterministic(name, tmp_path, monkeypatch):
    first = resolve_model(name)
    monkeypatch.setenv("LAB_GRADER_CACHE", str(tmp_path))
    second = resolve_model(name)
    assert second.path != first.path
    assert digest(first.path / "model.safetensors") == digest(second.path / "model.safetensors")
    assert digest(first.path / "tokenizer.json") == digest(second.path / "tokenizer.json")


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_tiny_tokenizer_round_trips(name):
    tokenizer = build_tokenizer(SPECS[name])
    for label, text in HARD_STRINGS:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(ids, skip_special_tokens=True) == text, label


def test_tiny_gpt2_is_gpt2():
    spec = resolve_model("tiny-gpt2")
    model = AutoModelForCausalLM.from_pretrained(spec.path)
    tokenizer = AutoTokenizer.from_pretrained(spec.path)
    assert type(model).__name__ == "GPT2LMHeadModel"
    assert tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.pad_token is None


@pytest.mark.default_model
def test_default_model_converted_once():
    spec = resolve_model("smollm2-135m-instruct")
    assert (spec.path / "model.safetensors").is_file()
    assert resolve_model("default").path == spec.path
    model = AutoModelForCausalLM.from_pretrained(spec.path)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert "quantization_config" not in model.config.to_dict()
    tokenizer = AutoTokenizer.from_pretrained(spec.path)
    for label, text in HARD_STRINGS:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False) == text, label
