"""The final project's probe: runs inside the submission process after its cells, and only gathers data.

It loads a fresh copy of the grading model and calls the submission's chat function on the held-out contexts.
Then it hands the model and the training dialogues to the submission's fine-tuning function, calls the chat
function again with the model it returns, and exports that model's weights. The grader process measures perplexities and scores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from harness import config
from harness.execute.probes import StudentError, call_student, export_weights, run_steps
from harness.execute.worker import EventLog, OutputCapture

WEIGHTS = "project_weights"


def run_all(job: dict, namespace: dict, events: EventLog, capture: OutputCapture) -> None:
    spec = job["probe"]["project"]
    limits = job["limits"]
    state: dict[str, Any] = {}
    steps: list[tuple[str, Callable[[], dict], float]] = [
        ("project.setup", lambda: setup(job, namespace, state), limits["check"]),
        ("project.before", lambda: replies(namespace, state, spec, "model"), limits["check"]),
        ("project.finetune", lambda: fine_tune(job, namespace, state), max(limits["check"], limits["cell"])),
        ("project.after", lambda: replies(namespace, state, spec, "tuned"), limits["check"]),
    ]
    # Without a model from setup, or without a fine-tuned model, the later steps have nothing to work on.
    run_steps(steps, events, capture, stop=lambda name, data: data["outcome"] != "ok" and name != "project.before")

def setup(job: dict, namespace: dict, state: dict) -> dict:
    """Load the grading model and tokenizer, and the training dialogues (the shipped ones or the submission's)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.project.dataset import DatasetFormatError, load_dialogues, validate_dialogue_file

    model_dir = job["model_dir"]
    state["tokenizer"] = AutoTokenizer.from_pretrained(model_dir)
    state["model"] = AutoModelForCausalLM.from_pretrained(model_dir)
    data: dict[str, Any] = {
        "fine_tune_defined": callable(namespace.get(config.PROJECT_FINE_TUNE_FN)),
        "chat_defined": callable(namespace.get(config.PROJECT_CHAT_FN)),
    }
    own = namespace.get(config.PROJECT_DATASET_VAR)
    if own is None:
        state["dataset"] = load_dialogues(split="train")
        data["dataset"] = {"source": "shipped", "dialogues": len(state["dataset"])}
        return data
    path = Path(job["workdir"]) / "own_dialogues.jsonl"
    try:
        records = list(own)
        path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), encoding="utf-8")
        validate_dialogue_file(path)
    except DatasetFormatError as error:
        data["dataset"] = {"source": "own", "error": str(error).replace(str(path), config.PROJECT_DATASET_VAR)}
        return data
    except (TypeError, ValueError) as error:
        data["dataset"] = {"source": "own", "error": f"{config.PROJECT_DATASET_VAR} is not a list of dialogue "
                                                     f"records: {error}"}
        return data
    state["dataset"] = load_dialogues(path)
    data["dataset"] = {"source": "own", "dialogues": len(state["dataset"])}
    return data


def replies(namespace: dict, state: dict, spec: dict, model_key: str) -> dict:
    """Call the chat function on every held-out context with `state[model_key]` as the model."""
    import torch

    chat = namespace.get(config.PROJECT_CHAT_FN)
    model = state.get(model_key)
    if not callable(chat) or model is None:
        return {"asked": False}
    answers = []
    for context in spec["contexts"]:
        torch.manual_seed(spec["seed"])
        try:
            reply = call_student(chat, model, state["tokenizer"], context)
        except StudentError as error:
            answers.append({"reply": None, "error": f"{error.details['error_type']}: {error.details['error']}"})
            continue
        if isinstance(reply, str):
            answers.append({"reply": reply})
        else:
            answers.append({"reply": None, "error": f"{config.PROJECT_CHAT_FN} returned {type(reply).__name__}, "
                                                    "not str"})
    return {"asked": True, "replies": answers}


def fine_tune(job: dict, namespace: dict, state: dict) -> dict:
    """Call the submission's fine-tuning function and export the model it returns."""
    from transformers import PreTrainedModel

    function = namespace.get(config.PROJECT_FINE_TUNE_FN)
    if not callable(function) or "dataset" not in state:
        return {"called": False}
    tuned = call_student(function, state["model"], state["tokenizer"], state["dataset"])
    if not isinstance(tuned, PreTrainedModel):
        return {"called": True, "returned": type(tuned).__name__}
    state["tuned"] = tuned
    export_weights(tuned, Path(job["artifacts"]) / WEIGHTS)
    return {"called": True, "returned": "model"}
