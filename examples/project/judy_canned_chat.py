# Judy's final project: the chat function answers the same sentence whatever the model.
# %% [markdown]
# # Final project: fine-tune a persona chatbot and measure it
#
# Define two functions; `grade project` calls them itself.
#
# - `fine_tune_chatbot(model, tokenizer, dataset)` fine-tunes `model` on `dataset`, a `datasets.Dataset` of
#   dialogues (columns `id`, `persona`, `turns`), and returns the fine-tuned model.
# - `chat_reply(model, tokenizer, context)` returns the reply of `model` to `context`: a persona line and the
#   dialogue so far, one `User: ...` or `Bot: ...` line per turn, ending with a line that is just `Bot:`.
#
# The grader measures perplexity on held-out dialogues and on a general English text, and compares your
# replies with the held-out reference replies (chrF, BLEU, ROUGE-L) before and after fine-tuning. To train on
# your own dialogues instead, set `PROJECT_DATASET` to a list of records in the same format.

# %%
import torch
from datasets import Dataset
from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments


def dialogue_text(record, eos):
    """Format one dialogue as a training text, in the layout of the grader's contexts."""
    lines = ["Persona: " + " ".join(record["persona"])]
    for turn in record["turns"]:
        lines.append(("User: " if turn["speaker"] == "user" else "Bot: ") + turn["text"])
    return "\n".join(lines) + eos


# %% tags=["part:project"]
def fine_tune_chatbot(model, tokenizer, dataset):
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    texts = [dialogue_text(record, tokenizer.eos_token) for record in dataset]
    encoded = Dataset.from_dict({"text": texts}).map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=256), batched=True, remove_columns=["text"])
    arguments = TrainingArguments(output_dir="project-checkpoints", num_train_epochs=1, learning_rate=2e-4,
                                  per_device_train_batch_size=4, save_strategy="no", report_to="none",
                                  logging_steps=10, seed=1234)
    trainer = Trainer(model=model, args=arguments, train_dataset=encoded,
                      data_collator=DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm=False))
    trainer.train()
    return trainer.model


# %% tags=["part:project"]
def chat_reply(model, tokenizer, context):
    # A friendly default answer while I work on generation.
    return "That sounds lovely, tell me more about it!"


# %% [markdown]
# ## Discussion
#
# **Discussion:** Before fine-tuning the model answers in its own chat style and ignores the "Bot:" format, so its replies are
# long and rarely mention the persona. After one epoch on the persona dialogues the held-out perplexity drops
# sharply, the replies become short first-person sentences in the style of the training data, and chrF against
# the reference replies rises. Perplexity on the general text rises a little: the model trades some general
# fluency for the dialogue style. A larger dialogue set, fewer epochs or a lower learning rate would limit that.
