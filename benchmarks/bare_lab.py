"""The bare compute of one lab submission, for comparison with the grader: load, fine-tune, generate, nothing else.

Usage: python benchmarks/bare_lab.py MODEL_FOLDER. It runs the fine-tuning of the example submissions: the pair
repeated 100 times, blocks of 128 tokens, one epoch, batch size 1. Then it runs the grader's generations, 4 prompts
before and 4 after fine-tuning with 48 new tokens each.
"""

from __future__ import annotations

import sys
import time

started = time.monotonic()

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
)

PROMPTS = ("Hello, how are you?", "What is your favourite book?", "Can you explain what a tokenizer does?",
           "Tell me something interesting about the ocean.")


def reply(model, tokenizer, text: str) -> str:
    torch.manual_seed(1234)
    ids = tokenizer.encode(text + tokenizer.eos_token, return_tensors="pt")
    output = model.generate(ids, max_new_tokens=48, pad_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(output[0, ids.shape[-1]:], skip_special_tokens=True)


def main(folder: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    original = {name: tensor.clone() for name, tensor in model.state_dict().items()}

    ids = tokenizer(("Hello, how are you?\nI'm good, thank you.\n") * 100)["input_ids"]
    blocks = [ids[start:start + 128] for start in range(0, len(ids) - 127, 128)]
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    arguments = TrainingArguments(output_dir="/tmp/bare-lab", num_train_epochs=1, per_device_train_batch_size=1,
                                  save_strategy="no", report_to="none", disable_tqdm=True)
    Trainer(model=model, args=arguments, train_dataset=Dataset.from_dict({"input_ids": blocks}),
            data_collator=DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm=False)).train()

    tuned = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    model.load_state_dict(original)
    for prompt in PROMPTS:
        reply(model, tokenizer, prompt)
    model.load_state_dict(tuned)
    for prompt in PROMPTS:
        reply(model, tokenizer, prompt)
    print(f"bare lab: {time.monotonic() - started:.2f} s")


if __name__ == "__main__":
    main(sys.argv[1])
