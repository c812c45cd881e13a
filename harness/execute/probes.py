"""Probes run inside the submission process after its cells: they collect the raw material the checks grade.

Probes only gather data (decoded strings, replies, exported weights), and the grader process decides pass or
fail. Exceptions raised by student code become data. An exception in a probe's own code is reported as an
internal error, so it is not blamed on the student.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness import config
from harness.execute.worker import (
    EventLog,
    OutputCapture,
    SoftTimeout,
    describe_exception,
    exit_if_forked,
    run_limited,
)


class StudentError(Exception):
    """Student code raised while a probe called it; `details` contains the described exception."""

    def __init__(self, details: dict[str, str]):
        super().__init__(details.get("error", ""))
        self.details = details


def call_student(function: Callable, *args: Any) -> Any:
    try:
        return function(*args)
    except SoftTimeout:
        raise
    except BaseException as error:  # noqa: BLE001 - SystemExit and friends from student code are results too
        raise StudentError(describe_exception(error, "<cell")) from None


@dataclass
class ProbeContext:
    job: dict
    namespace: dict
    recorder: Any
    artifacts: Path
    model: Any = None
    model_source: str = ""
    tokenizer: Any = None
    tokenizer_source: str = ""
    base_state: dict | None = None
    weights_changed: bool = False
    after_replies: dict[str, dict] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return self.job["seed"]

    def base(self) -> dict:
        if self.base_state is None:
            self.base_state = read_base_state(Path(self.job["model_dir"]))
        return self.base_state


def run_steps(steps: list[tuple[str, Callable[[], dict], float]], events: EventLog, capture: OutputCapture,
              stop: Callable[[str, dict], bool] | None = None) -> None:
    """Run each (name, step, limit) with its own time limit and output, reporting its data as a `probe` event.

    Student errors and timeouts become data. The steps end early when `stop(name, data)` is true.
    """
    worker_pid = os.getpid()
    for name, step, limit in steps:
        capture.to(f"probe-{name}")
        events.write("probe_start", check=name, limit=limit)
        started = time.monotonic()
        try:
            data = run_limited(limit, step)
        except SoftTimeout as error:
            data = {"outcome": "timeout", "error": str(error), "limit": limit}
        except StudentError as error:
            data = {"outcome": "student_error", **error.details}
        except Exception as error:  # noqa: BLE001 - a bug in the probe itself, reported as such
            data = {"outcome": "internal_error", **describe_exception(error)}
        exit_if_forked(worker_pid)
        data.setdefault("outcome", "ok")
        data["seconds"] = round(time.monotonic() - started, 3)
        events.write("probe", check=name, data=data)
        if stop is not None and stop(name, data):
            break


def run_all(job: dict, namespace: dict, recorder, events: EventLog, capture: OutputCapture) -> None:
    context = ProbeContext(job=job, namespace=namespace, recorder=recorder, artifacts=Path(job["artifacts"]))
    limits = job["limits"]
    steps = [
        ("model.load", probe_load, limits["check"]),
        ("tokenization.round_trip", probe_tokenization, limits["check"]),
        ("finetune.loss_decreases", probe_finetune, max(limits["check"], limits["cell"])),
        ("chatbot.before_after", probe_chatbot, limits["check"]),
        ("interface.gradio", probe_interface, limits["check"]),
    ]
    run_steps([(check_id, lambda probe=probe: probe(context), limit) for check_id, probe, limit in steps],
              events, capture)
    events.write("recorder", data=recorder.summary())


# -- model.load ---------------------------------------------------------------------------------------------


def find_object(namespace: dict, variable: str, kind: type, pipeline_attribute: str) -> tuple[Any, str]:
    """Find a model or tokenizer: the expected variable, else one inside a pipeline, else any variable of `kind`."""
    from transformers import Pipeline

    candidate = namespace.get(variable)
    if isinstance(candidate, kind):
        return candidate, f"variable `{variable}`"
    for name, value in namespace.items():
        if isinstance(value, Pipeline) and isinstance(getattr(value, pipeline_attribute, None), kind):
            return getattr(value, pipeline_attribute), f"pipeline `{name}`"
    for name, value in namespace.items():
        if isinstance(value, kind):
            return value, f"variable `{name}`"
    return None, ""


def probe_load(context: ProbeContext) -> dict:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    namespace = context.namespace
    context.model, context.model_source = find_object(namespace, config.MODEL_VAR, PreTrainedModel, "model")
    context.tokenizer, context.tokenizer_source = find_object(namespace, config.TOKENIZER_VAR,
                                                              PreTrainedTokenizerBase, "tokenizer")
    data: dict[str, Any] = {"requests": context.recorder.requests, "model": None, "tokenizer": None}
    if context.model is not None:
        model = context.model
        class_name = type(model).__name__
        data["model"] = {
            "class": class_name,
            "source": context.model_source,
            "causal_lm": class_name in set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()) or class_name.endswith("LMHeadModel"),
            "parameters": sum(parameter.numel() for parameter in model.parameters()),
            "device": str(next(model.parameters()).device),
            "dtype": str(next(model.parameters()).dtype),
        }
    if context.tokenizer is not None:
        data["tokenizer"] = {
            "class": type(context.tokenizer).__name__,
            "source": context.tokenizer_source,
            "vocab_size": len(context.tokenizer),
        }
    return data


# -- tokenization.round_trip --------------------------------------------------------------------------------


def as_token_ids(value: Any) -> list[int]:
    """Normalise what an encode helper returned (list, tensor, BatchEncoding, batch of one) to a list of ints."""
    if hasattr(value, "keys") and "input_ids" in value.keys():
        value = value["input_ids"]
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], (list, tuple)):
        value = value[0]
    return [int(token) for token in value]


def probe_tokenization(context: ProbeContext) -> dict:
    namespace = context.namespace
    encode = namespace.get(config.ENCODE_FN)
    decode = namespace.get(config.DECODE_FN)
    if callable(encode) and callable(decode):
        method = "helpers"
    elif context.tokenizer is not None:
        tokenizer = context.tokenizer
        method = "tokenizer"

        def encode(text):
            return tokenizer.encode(text, add_special_tokens=False)

        def decode(ids):
            return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    else:
        return {"method": None}

    results = []
    for text in context.job["probe"]["strings"]:
        entry: dict[str, Any] = {}
        try:
            ids = as_token_ids(call_student(encode, text))
            entry["tokens"] = len(ids)
            decoded = call_student(decode, ids)
            entry["decoded"] = decoded if isinstance(decoded, str) else None
            if not isinstance(decoded, str):
                entry["error"] = f"{config.DECODE_FN} returned {type(decoded).__name__}, not str"
        except StudentError as error:
            entry["error"] = f"{error.details['error_type']}: {error.details['error']}"
        except (TypeError, ValueError) as error:
            entry["error"] = f"{config.ENCODE_FN} did not return token ids: {error}"
        results.append(entry)
    return {"method": method, "results": results}


# -- finetune.loss_decreases --------------------------------------------------------------------------------


def read_base_state(model_dir: Path) -> dict:
    """Load the grading model's original weights as a state dict, without building a model where possible."""
    from safetensors.torch import load_file

    single = model_dir / "model.safetensors"
    shards = sorted(model_dir.glob("model-*-of-*.safetensors"))
    if single.is_file():
        return load_file(single)
    if shards:
        state: dict = {}
        for shard in shards:
            state.update(load_file(shard))
        return state
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir).state_dict()


def overlap(tensor, base_tensor):
    """Return the parts of `tensor` and `base_tensor` that correspond, allowing rows added by resize_token_embeddings."""
    if tensor.shape == base_tensor.shape:
        return tensor, base_tensor
    if tensor.dim() == base_tensor.dim() and tensor.shape[1:] == base_tensor.shape[1:]:
        rows = min(tensor.shape[0], base_tensor.shape[0])
        return tensor[:rows], base_tensor[:rows]
    return None, None


def weights_changed(model, base: dict) -> bool:
    import torch

    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name not in base:
                continue
            current, original = overlap(tensor.detach().cpu(), base[name])
            if current is not None and not torch.equal(current.to(original.dtype), original):
                return True
    return False


def export_weights(model, folder: Path) -> None:
    """Write the model's weights (safetensors) and config (JSON) for the grader to load; never a pickle."""
    from safetensors.torch import save_model

    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(folder / "model.safetensors"))
    model.config.to_json_file(str(folder / "config.json"))


def probe_finetune(context: ProbeContext) -> dict:
    if context.model is None:
        return {"model": False}
    recorder = context.recorder
    changed = weights_changed(context.model, context.base())
    data: dict[str, Any] = {"model": True, "grader_called": False}

    fine_tune = context.namespace.get(config.FINE_TUNE_FN)
    never_trained = recorder.train_calls == 0 and recorder.optimizer_steps == 0
    if not changed and never_trained and callable(fine_tune) and context.tokenizer is not None:
        # The notebook defines the function but never ran it: run it once, as the lab's notebook would.
        data["grader_called"] = True
        try:
            call_student(fine_tune, context.model, context.tokenizer)
        except StudentError as error:
            data["call_error"] = error.details
        changed = weights_changed(context.model, context.base())

    context.weights_changed = changed
    data["changed"] = changed
    data["fine_tune_defined"] = callable(fine_tune)
    data.update(trainers_built=recorder.trainers_built, train_calls=recorder.train_calls, optimizer_steps=recorder.optimizer_steps)
    export_weights(context.model, context.artifacts / "weights")
    return data


# -- chatbot.before_after -----------------------------------------------------------------------------------


def ask(context: ProbeContext, generate: Callable, prompt: str) -> dict:
    import torch

    torch.manual_seed(context.seed)
    started = time.monotonic()
    try:
        reply = call_student(generate, prompt)
    except StudentError as error:
        return {"reply": None, "error": f"{error.details['error_type']}: {error.details['error']}",
                "traceback": error.details["traceback"]}
    entry: dict[str, Any] = {"seconds": round(time.monotonic() - started, 3)}
    if isinstance(reply, str):
        entry["reply"] = reply
    else:
        entry["reply"] = None
        entry["error"] = f"{config.GENERATE_FN} returned {type(reply).__name__}, not str: {str(reply)[:200]}"
    return entry


def probe_chatbot(context: ProbeContext) -> dict:
    """Ask the submission's chatbot every rubric prompt after fine-tuning.

    The replies before fine-tuning are the grader's cached baseline, the same for every submission.
    """
    generate = context.namespace.get(config.GENERATE_FN)
    if not callable(generate):
        return {"defined": False}
    prompts = context.job["probe"]["chat_prompts"]
    data: dict[str, Any] = {"defined": True, "prompts": prompts}
    data["after"] = [ask(context, generate, prompt) for prompt in prompts]
    context.after_replies = dict(zip(prompts, data["after"]))
    return data


# -- interface.gradio ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return probe_socket.getsockname()[1]


def probe_interface(context: ProbeContext) -> dict:
    import gradio
    import torch
    from gradio_client import Client

    namespace = context.namespace
    interface = namespace.get(config.INTERFACE_VAR)
    source = f"variable `{config.INTERFACE_VAR}`"
    if not isinstance(interface, gradio.Blocks):
        found = [(name, value) for name, value in namespace.items() if isinstance(value, gradio.Blocks)]
        if not found:
            return {"defined": False}
        source, interface = f"variable `{found[0][0]}`", found[0][1]

    data: dict[str, Any] = {"defined": True, "source": source, "class": type(interface).__name__}
    if isinstance(interface, gradio.Interface):
        data["inputs"] = [type(component).__name__ for component in interface.input_components]
        data["outputs"] = [type(component).__name__ for component in interface.output_components]

    prompt = context.job["probe"]["chat_prompts"][0]
    launch = gradio.Blocks._grader_original_launch
    try:
        _, local_url, _ = _launch(launch, interface)
    except StudentError as error:
        data["launch_error"] = error.details
        return data
    data["url"] = local_url
    try:
        client = Client(local_url, verbose=False, download_files=False)
        endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        single = [name for name, info in endpoints.items() if len(info.get("parameters", [])) == 1]
        api_name = (single or list(endpoints))[0] if endpoints else None
        data["api_name"] = api_name
        torch.manual_seed(context.seed)
        answer = client.predict(prompt, api_name=api_name) if api_name else client.predict(prompt, fn_index=0)
        data["answer"] = answer if isinstance(answer, str) else repr(answer)
    except Exception as error:  # noqa: BLE001 - the app's failure (the student's fn raised) arrives as a client error
        data["call_error"] = f"{type(error).__name__}: {str(error)[:1000]}"
    finally:
        interface.close()

    generate = namespace.get(config.GENERATE_FN)
    if callable(generate):
        direct = context.after_replies.get(prompt) or ask(context, generate, prompt)
        data["direct"] = direct.get("reply")
    data["prompt"] = prompt
    return data


def _launch(launch: Callable, interface) -> tuple:
    return call_student(
        lambda: launch(
            interface,
            server_name="127.0.0.1",
            server_port=free_port(),
            share=False,
            inbrowser=False,
            prevent_thread_lock=True,
            quiet=True,
        )
    )
