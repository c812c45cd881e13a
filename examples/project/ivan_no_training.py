# Ivan's final project: the fine-tuning function returns the model untouched.
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
    # Training takes too long on my laptop, so I skip it for now.
    return model


# %% tags=["part:project"]
def chat_reply(model, tokenizer, context):
    ids = tokenizer(context, return_tensors="pt")["input_ids"].to(model.device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.no_grad():
        output = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=32, do_sample=False,
                                pad_token_id=pad)
    reply = tokenizer.decode(output[0, ids.shape[-1]:], skip_special_tokens=True)
    return reply.strip().split("\n", 1)[0].strip()


# %% [markdown]
# ## Discussion
#
# **Discussion:** Before fine-tuning the model answers in its own chat style and ignores the "Bot:" format, so its replies are
# long and rarely mention the persona. After one epoch on the persona dialogues the held-out perplexity drops
# sharply, the replies become short first-person sentences in the style of the training data, and chrF against
# the reference replies rises. Perplexity on the general text rises a little: the model trades some general
# fluency for the dialogue style. A larger dialogue set, fewer epochs or a lower learning rate would limit that.
