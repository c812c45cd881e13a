"""Specific hints for mistakes that real lab submissions make, matched on the exception a cell raised."""

from __future__ import annotations

import re

# (exception type or None for any, pattern on the message, hint)
KNOWN_MISTAKES: tuple[tuple[str | None, re.Pattern, str], ...] = (
    (
        "ImportError",
        re.compile(r"TextDataset"),
        "TextDataset was removed in transformers 5. Build the training set with the datasets library instead: "
        "tokenize the repeated text, cut the token ids into blocks of 128 and pass "
        "datasets.Dataset.from_dict({'input_ids': blocks}) to Trainer.",
    ),
    (
        "ImportError",
        re.compile(r"AutoModelWithLMHead"),
        "AutoModelWithLMHead was removed in transformers 5; use AutoModelForCausalLM.",
    ),
    (
        "TypeError",
        re.compile(r"overwrite_output_dir"),
        "TrainingArguments no longer accepts overwrite_output_dir (removed in transformers 5); delete that "
        "argument, the output folder is reused as it is.",
    ),
    (
        "TypeError",
        re.compile(r"evaluation_strategy"),
        "TrainingArguments renamed evaluation_strategy to eval_strategy in transformers 5.",
    ),
    (
        None,
        re.compile(r"Torch not compiled with CUDA|NVIDIA driver|CUDA driver|no CUDA GPUs|CUDA is not available", re.I),
        "This run has no GPU. Choose the device at run time: "
        "device = 'cuda' if torch.cuda.is_available() else 'cpu', then model.to(device) and inputs.to(device).",
    ),
    (
        "ValueError",
        re.compile(r"does not have a padding token|pad_token", re.I),
        "GPT-2 style tokenizers have no padding token; set tokenizer.pad_token = tokenizer.eos_token "
        "before building the data collator.",
    ),
    (
        None,
        re.compile(r"MemoryError|can't allocate memory|Cannot allocate memory|out of memory", re.I),
        "The run ran out of memory: the grader caps each submission's memory (--memory, 8 GiB by default). "
        "Keep one copy of the model and train with batch size 1.",
    ),
    (
        "BlockingIOError",
        re.compile(r"Resource temporarily unavailable"),
        "The run could not start another process or thread: the grader caps how many each submission may run "
        "at once.",
    ),
    (
        "FileNotFoundError",
        re.compile(r"/content/|drive/MyDrive"),
        "The path points into Colab's /content or Google Drive, which do not exist here; "
        "write files relative to the current folder.",
    ),
)

SHARE_HINT = (
    "launch(share=True) asks Gradio's servers for a public link, which needs internet access and fails on an "
    "offline machine; the grader ignored it. Use iface.launch() for a local demo."
)


def hint_for(error_type: str | None, message: str | None) -> str | None:
    """Return the hint for a known mistake, or None."""
    text = message or ""
    for expected_type, pattern, hint in KNOWN_MISTAKES:
        if expected_type is not None and error_type != expected_type and not (
            expected_type == "ImportError" and error_type == "ModuleNotFoundError"
        ):
            continue
        if pattern.search(text):
            return hint
    return None
