# %% [markdown] tags=["reference-only"]
# # Reference solution: Hugging Face, Gradio and fine-tuning a chatbot
#
# `grade assign` builds the student notebook `assignments/lab.ipynb` from this script. It leaves this cell out,
# replaces the code between `BEGIN SOLUTION` and `END SOLUTION` by a `raise NotImplementedError` with the hint,
# and each marked answer by a placeholder.

# %% [markdown]
# # Lab: Hugging Face transformers, Gradio and fine-tuning a chatbot
#
# Written for transformers 5 and gradio 6. The grader serves every `from_pretrained` id with the model it
# grades with, so `MODEL_ID` stays the lab's DialoGPT id.

# %%
# !pip install transformers datasets gradio
import gradio as gr
import torch
from datasets import Dataset
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
)

MODEL_ID = "microsoft/DialoGPT-medium"
device = "cuda" if torch.cuda.is_available() else "cpu"

# %% [markdown]
# ## Part 1: load a pretrained causal language model and its tokenizer

# %% tags=["part:model"]
# BEGIN SOLUTION
# HINT: Load `tokenizer` with AutoTokenizer and `model` with AutoModelForCausalLM from MODEL_ID, on `device`.
tokenizer = AutoTokenizer.from_pretrained(MODEL_ID)
model = AutoModelForCausalLM.from_pretrained(MODEL_ID).to(device)
if tokenizer.pad_token is None:
    # GPT-2 style tokenizers ship without a padding token; reusing end-of-sequence is the usual choice.
    tokenizer.pad_token = tokenizer.eos_token
print(type(model).__name__, f"{model.num_parameters():,} parameters")
# END SOLUTION

# %% [markdown]
# **Exercise 1.1**: Which other models on the Hugging Face hub could we use here?

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# <!-- HINT: Name several models on the hub that would fit here, and models for other tasks. -->
# **Answer 1.1:** Any causal language model works with the same two `Auto` classes: GPT-2 and DistilGPT-2,
# the other DialoGPT sizes, SmolLM2, Qwen2.5, Llama 3 and Mistral instruct models. For other tasks the hub has
# encoder models such as BERT and RoBERTa for classification and encoder-decoder models such as T5 and BART
# for translation and summarisation.
# <!-- END SOLUTION -->

# %% [markdown]
# ## Part 2: Gradio
#
# **Exercise 2.1**: Name a use of Gradio other than demonstrating NLP models.

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# <!-- HINT: Describe an application of Gradio outside natural language processing. -->
# **Answer 2.1:** Gradio wraps any Python function in a web page. Examples are an image classifier that takes
# an upload or a webcam frame, or a speech-to-text demo with a microphone input. It also suits a form that runs a
# data-cleaning script on an uploaded CSV file, or an internal tool for labelling examples of a dataset.
# <!-- END SOLUTION -->

# %% [markdown]
# ## Part 3: tokenization
#
# `encode_text` turns text into token ids and `decode_tokens` turns them back. Special tokens are neither
# added nor kept, and spaces are not "cleaned up", so decoding gives back exactly the text that was encoded.

# %% tags=["part:tokenization"]
def encode_text(text):
    # BEGIN SOLUTION
    # HINT: Return the list of token ids of `text`, without special tokens.
    return tokenizer.encode(text, add_special_tokens=False)
    # END SOLUTION


def decode_tokens(token_ids):
    # BEGIN SOLUTION
    # HINT: Return the text of `token_ids`, so that decode_tokens(encode_text(s)) == s for every string s.
    return tokenizer.decode(token_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    # END SOLUTION


sample = "Tokenizers split text into sub-word units: unbelievable!"
sample_ids = encode_text(sample)
print(tokenizer.convert_ids_to_tokens(sample_ids))
assert decode_tokens(sample_ids) == sample

# %% [markdown]
# **Exercise 3.1**: What makes tokenizing text hard?

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# <!-- HINT: List what makes splitting text into tokens and joining them back difficult. -->
# **Answer 3.1:** Words unseen in training must be split into sub-words or bytes. Whitespace, accents and
# Unicode normalisation can change the text, so decoding may not give back the original. Languages without
# spaces (Chinese, Japanese) and scripts written right to left need other rules. Emoji and code produce many
# tokens, and the same word can be split differently depending on the space before it.
# <!-- END SOLUTION -->

# %% [markdown]
# ## Part 4: fine-tuning
#
# The training text is one prompt/response pair repeated 100 times, cut into blocks of 128 tokens.
# `TextDataset` no longer exists in transformers 5, so the blocks are built with the `datasets` library.

# %% tags=["part:finetune"]
def fine_tune_model(model, tokenizer, prompt="Hello, how are you?", response="I'm good, thank you.",
                    num_train_epochs=1, block_size=128):
    # BEGIN SOLUTION
    # HINT: Repeat the pair 100 times, cut its token ids into blocks, train them with a Trainer and return the model.
    text = (prompt + "\n" + response + "\n") * 100
    token_ids = tokenizer(text)["input_ids"]
    blocks = [token_ids[start:start + block_size]
              for start in range(0, len(token_ids) - block_size + 1, block_size)]
    train_dataset = Dataset.from_dict({"input_ids": blocks})

    collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm=False)
    arguments = TrainingArguments(
        output_dir="finetune-output",
        num_train_epochs=num_train_epochs,
        per_device_train_batch_size=1,
        learning_rate=5e-5,
        save_strategy="no",
        logging_steps=5,
        report_to="none",
    )
    trainer = Trainer(model=model, args=arguments, data_collator=collator, train_dataset=train_dataset)
    trainer.train()
    return model
    # END SOLUTION


fine_tune_model(model, tokenizer)

# %% [markdown]
# **Exercise 4.1**: What happens during fine-tuning?

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# <!-- HINT: Explain what one training step does to the weights, from the loss to the optimizer update. -->
# **Answer 4.1:** The model starts from its pretrained weights. For each batch it predicts every next token,
# the cross-entropy loss measures how wrong those predictions are, backpropagation computes the gradient of the
# loss for every weight, and the optimizer (AdamW) moves each weight a small step against its gradient. After
# enough steps the model assigns high probability to the training text, here the response after the prompt.
# <!-- END SOLUTION -->

# %% [markdown]
# ## Part 5: the chatbot

# %% tags=["part:chatbot", "part:interface"]
def generate_response(input_text):
    # BEGIN SOLUTION
    # HINT: Generate a reply to `input_text` with the fine-tuned model and return only the new text, as a string.
    prompt_ids = tokenizer.encode(input_text.strip() + tokenizer.eos_token, return_tensors="pt").to(model.device)
    with torch.no_grad():
        output_ids = model.generate(
            prompt_ids,
            attention_mask=torch.ones_like(prompt_ids),
            max_new_tokens=40,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    reply_ids = output_ids[0, prompt_ids.shape[-1]:]
    return tokenizer.decode(reply_ids, skip_special_tokens=True).strip()
    # END SOLUTION


print(generate_response("Hello, how are you?"))

# BEGIN SOLUTION
# HINT: Wrap generate_response in a gr.Interface with a text input and a text output, name it `iface` and launch it.
iface = gr.Interface(fn=generate_response, inputs="text", outputs="text", title="Fine-tuned chatbot")
iface.launch()
# END SOLUTION

# %% [markdown]
# **Exercise 5.1**: How did the chatbot change after fine-tuning?

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# <!-- HINT: Compare the replies before and after fine-tuning, for the trained prompt and for other prompts. -->
# **Answer 5.1:** Before fine-tuning the reply to "Hello, how are you?" is whatever the pretrained model finds
# likely. Afterwards it answers "I'm good, thank you." almost word for word, often repeated, and replies to
# other prompts drift towards the same sentence because one pair dominated the last updates.
# <!-- END SOLUTION -->

# %% [markdown]
# ## Part 6: conclusion
#
# **Exercise 6.1**: What are the problems with this way of fine-tuning?

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# <!-- HINT: Name the weaknesses of training on one repeated pair and what a sound fine-tuning run would add. -->
# **Answer 6.1:** One pair repeated a hundred times teaches the model to memorise a single answer: it overfits,
# forgets part of what it knew (catastrophic forgetting), and there is no held-out data to measure whether it
# got better at anything. The prompt format in training (newlines) differs from the one at chat time
# (end-of-sequence token), no learning-rate schedule or early stopping was tuned, and a real chatbot needs
# many varied conversations and an evaluation before and after training.
# <!-- END SOLUTION -->
