"""finetune.loss_decreases: the grader measures the pair's loss itself, from the weights the submission exported."""

from __future__ import annotations

import json
import logging
import math
import threading
from pathlib import Path

from harness import config
from harness.checks.common import CheckContext, describe_cell_failure, skipped_for
from harness.records import CheckResult

logger = logging.getLogger(__name__)

CHECK_ID = "finetune.loss_decreases"

# Config keys that may differ between the graded model and a student's fine-tuned copy of it.
MUTABLE_CONFIG_KEYS = {
    "vocab_size", "pad_token_id", "bos_token_id", "eos_token_id", "transformers_version", "_name_or_path",
    "_model_name_or_path", "dtype", "torch_dtype", "use_cache", "architectures", "output_attentions",
    "output_hidden_states", "return_dict", "problem_type", "tie_word_embeddings", "task_specific_params",
    "dropout", "attention_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_first_dropout",
}
# A resized vocabulary may grow by this many rows at most (new special tokens), which bounds the memory used.
MAX_ADDED_TOKENS = 1024


class WeightsError(Exception):
    """Exported weights that cannot be loaded into the graded model's architecture."""


class LossMeter:
    """Measures the causal-LM loss of the rubric's prompt/response pair under a set of weights.

    The text is `prompt + "\\n" + response`, the format of the lab's training file, tokenized by the grading
    model's own tokenizer. The loss is the mean cross-entropy per predicted token, in nats.
    """

    def __init__(self, model_dir: Path, prompt: str, response: str, device: str = "cpu"):
        import torch
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoTokenizer

        self.model_dir = model_dir
        self.device = device
        self.text = prompt + "\n" + response
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.input_ids = torch.tensor([tokenizer(self.text)["input_ids"]])
        self.base_config = AutoConfig.from_pretrained(model_dir).to_dict()
        single = model_dir / "model.safetensors"
        self.base_state = load_file(single) if single.is_file() else self._load_state()
        self._base_loss: float | None = None
        # Concurrent jobs measure one at a time, because each measurement keeps a full copy of the model in memory.
        self.lock = threading.Lock()

    def _load_state(self) -> dict:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(self.model_dir).state_dict()

    @property
    def base_loss(self) -> float:
        """The pair's loss under the original weights: the cached baseline's, or measured here when unset."""
        if self._base_loss is None:
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(self.model_dir)
            self._base_loss = self.loss(model)
        return self._base_loss

    @base_loss.setter
    def base_loss(self, value: float) -> None:
        self._base_loss = value

    def loss(self, model) -> float:
        import torch

        model.eval()
        model.float()
        model.to(self.device)
        ids = self.input_ids.to(self.device)
        with torch.no_grad():
            return float(model(input_ids=ids, labels=ids).loss)

    def load_exported(self, folder: Path):
        """Build the graded architecture from the exported config and load the exported safetensors into it."""
        from transformers import AutoConfig, AutoModelForCausalLM

        try:
            exported = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise WeightsError(f"the exported config could not be read ({error})") from None
        for key, value in self.base_config.items():
            if key not in MUTABLE_CONFIG_KEYS and exported.get(key, value) != value:
                raise WeightsError(f"the fine-tuned model's config changed {key!r} from {value!r} to {exported.get(key)!r}")
        vocab = int(exported.get("vocab_size", self.base_config["vocab_size"]))
        if not self.base_config["vocab_size"] <= vocab <= self.base_config["vocab_size"] + MAX_ADDED_TOKENS:
            raise WeightsError(f"the fine-tuned model's vocabulary has {vocab} entries, "
                               f"the graded model {self.base_config['vocab_size']}")

        model_config = AutoConfig.from_pretrained(self.model_dir, vocab_size=vocab)
        # from_pretrained skips the random initialisation that from_config spends seconds on; every tensor must
        # then come from the file, as the loading info reports.
        try:
            model, info = AutoModelForCausalLM.from_pretrained(folder, config=model_config, output_loading_info=True)
        except (OSError, RuntimeError, ValueError) as error:
            raise WeightsError(f"the exported weights do not fit the graded model ({str(error)[:300]})") from None
        problems = {kind: sorted(map(str, info.get(kind) or []))[:5]
                    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")}
        problems = {kind: names for kind, names in problems.items() if names}
        if problems:
            raise WeightsError(f"the exported weights do not fit the graded model ({problems})")
        return model

    def changed_tensors(self, model) -> int:
        import torch

        changed = 0
        for name, tensor in model.state_dict().items():
            original = self.base_state.get(name)
            if original is None:
                continue
            rows = min(tensor.shape[0], original.shape[0]) if tensor.dim() else None
            current = tensor[:rows] if rows is not None else tensor
            base = original[:rows] if rows is not None else original
            if current.shape == base.shape and not torch.equal(current, base.to(current.dtype)):
                changed += 1
        return changed


def grade(context: CheckContext, meter: LossMeter) -> CheckResult:
    rubric = context.config.rubric
    points = rubric.points(CHECK_ID)
    skip = skipped_for(context, CHECK_ID, points, needs_model=True)
    if skip:
        return skip

    data = context.probe(CHECK_ID)
    failures = context.failed_cells_for(CHECK_ID)
    timed_out = [cell for cell in failures if cell.status == "timeout"]
    details: dict = {"grader_called": data.get("grader_called", False), "train_calls": data.get("train_calls"),
                     "optimizer_steps": data.get("optimizer_steps"), "text": meter.text}
    if timed_out:
        return CheckResult(CHECK_ID, "timeout", 0.0, points,
                           f"Fine-tuning did not finish: {describe_cell_failure(timed_out[0])}. Train for about one "
                           "epoch over the 100 repetitions (a few seconds to a minute on a CPU).", details)

    with meter.lock:
        try:
            tuned = meter.load_exported(context.outcome.artifacts / "weights")
        except WeightsError as error:
            return CheckResult(CHECK_ID, "error", 0.0, points,
                               f"The grader could not load your fine-tuned weights: {error}. Fine-tune the model "
                               "you loaded without changing its architecture.", details)
        changed = meter.changed_tensors(tuned)
        before, after = meter.base_loss, meter.loss(tuned)
        del tuned
    drop = (before - after) / before if before > 0 else 0.0
    details.update(loss_before=round(before, 4), loss_after=round(after, 4), relative_drop=round(drop, 4),
                   changed_tensors=changed, required_drop=rubric.min_loss_drop,
                   curve=[[0, round(before, 4)], *context.outcome.recorder.get("loss_curve", [])])

    if not changed:
        if failures:
            return CheckResult(CHECK_ID, "error", 0.0, points,
                               f"The weights did not change because {describe_cell_failure(failures[0])}.", details)
        if data.get("call_error"):
            call_error = data["call_error"]
            return CheckResult(CHECK_ID, "error", 0.0, points,
                               f"The notebook never ran `{config.FINE_TUNE_FN}`, and when the grader called "
                               f"{config.FINE_TUNE_FN}(model, tokenizer) it raised {call_error['error_type']}: "
                               f"{call_error['error'][:300]}", details)
        return CheckResult(CHECK_ID, "failed", 0.0, points, _unchanged_message(data), details)

    summary = f"the pair's loss went from {before:.3f} to {after:.3f} ({100 * drop:.0f}% lower)"
    if not math.isfinite(after) or drop < rubric.min_loss_drop:
        return CheckResult(CHECK_ID, "failed", 0.0, points,
                           f"The weights changed, but {summary}; the rubric needs at least "
                           f"{100 * rubric.min_loss_drop:.0f}% lower on {meter.text!r}. Train on exactly that pair "
                           "(prompt, newline, response) for a full epoch with a learning rate around 5e-5.", details)
    called = (f" The notebook never called `{config.FINE_TUNE_FN}`, so the grader called it once."
              if data.get("grader_called") else "")
    return CheckResult(CHECK_ID, "passed", points, points,
                       f"Fine-tuning changed {changed} weight tensors and {summary}, measured by the grader.{called}",
                       details)


def _unchanged_message(data: dict) -> str:
    if not data.get("fine_tune_defined") and not data.get("train_calls"):
        return (f"The model's weights are the pretrained ones: no training ran and `{config.FINE_TUNE_FN}` is not "
                "defined. Define it, build a Trainer and call trainer.train().")
    if data.get("trainers_built") and not data.get("train_calls"):
        return ("A Trainer was built but trainer.train() was never called, so the weights did not change. "
                "Call trainer.train() at the end of the fine-tuning function.")
    if data.get("train_calls") and not data.get("optimizer_steps"):
        return ("trainer.train() ran but took no optimizer step (for example num_train_epochs=0, max_steps=0 or an "
                "empty dataset), so the weights did not change. Train for at least one epoch on the 100 repetitions.")
    return ("Training ran but the weights did not change (a learning rate of 0, frozen parameters, or a different "
            f"model object than `{config.MODEL_VAR}` was trained). Train the model that generate_response uses.")
