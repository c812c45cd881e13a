"""Tiny random-weight models for tests, built locally and deterministically.

Both are two layers deep but as wide as GPT-2 small (768). At that width, one epoch of the lab's fine-tuning
(about 11 steps at Trainer's default learning rate of 5e-5) lowers the loss of the trained pair by more than half
and makes the reply to the trained prompt contain the trained response, as it does for a pretrained model. A
narrower model (64 or 256) barely moves in 11 steps, so the checks could not tell a working submission from a broken one.
"""

from __future__ import annotations

from pathlib import Path

from harness.models.registry import ModelSpec, cached_folder

SEED = 20240611
# Bump when the architecture or tokenizer recipe below changes, so cached copies are rebuilt.
RECIPE_VERSION = 2
VOCAB_SIZE = 1000
HIDDEN = 768
LAYERS = 2
MAX_POSITIONS = 1024

# Text the tokenizers are trained on: chat turns, explanations and code, so that common words and the lab's
# prompts become single tokens while everything else falls back to bytes.
CORPUS = """\
Hello, how are you? I'm good, thank you. And you?
Hi there! What can I do for you today?
What is your favourite book? I like stories about the sea and long journeys.
Can you explain what a tokenizer does? It splits text into tokens and maps each token to a number.
Tell me something interesting about the ocean. The ocean covers most of the planet and is deep and dark.
A language model predicts the next token from the tokens before it.
Fine-tuning changes the weights of a pretrained model so that it fits new data.
The loss measures how surprised the model is by the text; training makes the loss smaller.
Gradio builds a web page around a Python function so people can try a model in the browser.
The weather is nice today, so we went for a walk in the park.
Thank you very much for your help! You are welcome.
Good morning, good evening, good night. See you tomorrow.
I don't know the answer, but I can try to find out.
def greet(name):
    return "Hello, " + name + "!"
for i in range(10):
    print(i, i * i)
Numbers like 1, 2, 3, 42 and 2024 appear in text too.
Questions end with a question mark? Exclamations end with an exclamation mark!
"""

SPECS = {
    "tiny-gpt2": {
        "architecture": "gpt2",
        "special_tokens": {"bos": "<|endoftext|>", "eos": "<|endoftext|>", "unk": "<|endoftext|>"},
        "add_bos": False,
    },
    "tiny-llama": {
        "architecture": "llama",
        "special_tokens": {"bos": "<s>", "eos": "</s>", "unk": "<unk>"},
        "add_bos": True,
    },
}


def ensure_built(name: str) -> ModelSpec:
    """Return the cached tiny model `name`, building it on first use (a few seconds)."""
    import tokenizers
    import torch
    import transformers

    spec = SPECS[name]
    key = {
        "name": name,
        "recipe": RECIPE_VERSION,
        "spec": spec,
        "seed": SEED,
        "shape": [VOCAB_SIZE, HIDDEN, LAYERS, MAX_POSITIONS],
        "corpus": CORPUS,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }
    folder = cached_folder(key, name, lambda target: _build(name, spec, target))
    described = "GPT-2" if spec["architecture"] == "gpt2" else "Llama"
    return ModelSpec(
        name=name,
        path=folder,
        description=f"{name}: random {described} weights ({LAYERS} layers, width {HIDDEN}), seed {SEED}, for tests",
    )


def _build(name: str, spec: dict, target: Path) -> None:
    import torch

    tokenizer = build_tokenizer(spec)
    torch.manual_seed(SEED)
    model = _build_model(spec, tokenizer)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


def build_tokenizer(spec: dict):
    """Train a byte-level BPE tokenizer on `CORPUS`: every string round-trips, as with GPT-2's tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = spec["special_tokens"]
    special_tokens = list(dict.fromkeys([special["bos"], special["eos"], special["unk"]]))

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS.splitlines(keepends=True), trainer)

    if spec["add_bos"]:
        bos = special["bos"]
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A {bos} $B",
            special_tokens=[(bos, backend.token_to_id(bos))],
        )
    else:
        backend.post_processor = processors.ByteLevel(trim_offsets=False)

    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=special["bos"],
        eos_token=special["eos"],
        unk_token=special["unk"],
        model_max_length=MAX_POSITIONS,
        clean_up_tokenization_spaces=False,
    )


def _build_model(spec: dict, tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    vocab = len(tokenizer)
    bos = tokenizer.bos_token_id
    eos = tokenizer.eos_token_id
    if spec["architecture"] == "gpt2":
        config = GPT2Config(
            vocab_size=vocab,
            n_positions=MAX_POSITIONS,
            n_embd=HIDDEN,
            n_layer=LAYERS,
            n_head=12,
            bos_token_id=bos,
            eos_token_id=eos,
        )
        return GPT2LMHeadModel(config)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=HIDDEN,
        intermediate_size=4 * HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=12,
        num_key_value_heads=12,
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=bos,
        eos_token_id=eos,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)
