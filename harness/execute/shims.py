"""Patches installed in the submission process before any student code runs.

They serve every `from_pretrained` id with the grading model, keep `launch()` from blocking or going online,
make `google.colab` importable, record IPython magics without running them, cap generation length, and record
what the student's code did (models loaded, trainers built and run, optimizer steps) for the checks.
"""

from __future__ import annotations

import os
import re
import sys
import types
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# Keyword arguments that only make sense for a hub download and would be wrong for the served folder.
# The loss curve is measured after each of the first CURVE_EVERY_STEP steps, then after every CURVE_STRIDE-th
# step up to MAX_CURVE_STEPS, so a long training pays for at most about 190 extra forward passes.
CURVE_EVERY_STEP = 100
CURVE_STRIDE = 10
MAX_CURVE_STEPS = 1000
# Models returned by `from_pretrained` in this process, to find the one an optimizer trains.
LOADED_MODELS: "weakref.WeakSet" = weakref.WeakSet()

HUB_ONLY_KWARGS = ("revision", "subfolder", "token", "use_auth_token", "cache_dir", "force_download", "gguf_file")


@dataclass
class Recorder:
    """Record of the student's calls, as seen through the patches."""

    model_dir: str
    max_new_tokens: int
    requests: list[dict[str, str]] = field(default_factory=list)
    trainers_built: int = 0
    train_calls: int = 0
    optimizer_steps: int = 0
    generate_capped: list[str] = field(default_factory=list)
    launches: list[dict[str, Any]] = field(default_factory=list)
    magics_seen: list[str] = field(default_factory=list)
    colab_calls: list[str] = field(default_factory=list)
    # The rubric's pair, "prompt\nresponse"; its loss is measured after each optimizer step.
    pair_text: str = ""
    # [optimizer step, loss of the pair], measured as CURVE_EVERY_STEP and CURVE_STRIDE say.
    loss_curve: list[list[float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "trainers_built": self.trainers_built,
            "train_calls": self.train_calls,
            "optimizer_steps": self.optimizer_steps,
            "generate_capped": self.generate_capped[:5],
            "launches": self.launches,
            "colab_calls": self.colab_calls[:20],
            "loss_curve": self.loss_curve,
        }


def served_path(requested: Any, model_dir: str) -> tuple[Any, bool]:
    """Return the path to load for `requested` and whether it was redirected to the grading model.

    A path that exists (the student's own checkpoint, say) is loaded as it is. Anything shaped like a hub id
    is served by the grading model, so no submission loads from the network.
    """
    if not isinstance(requested, (str, os.PathLike)):
        return requested, False
    text = os.fspath(requested)
    if os.path.exists(text) or not HUB_ID.match(text):
        return requested, False
    return model_dir, True


def install(recorder: Recorder) -> None:
    _patch_from_pretrained(recorder)
    _patch_training(recorder)
    _patch_generate(recorder)
    _patch_gradio(recorder)
    _install_colab_stub(recorder)


def _patch_from_pretrained(recorder: Recorder) -> None:
    import transformers
    from transformers.models.auto.auto_factory import _BaseAutoModelClass

    owners = [
        transformers.PreTrainedModel,
        _BaseAutoModelClass,
        transformers.AutoTokenizer,
        transformers.PreTrainedTokenizerBase,
        transformers.AutoConfig,
        transformers.PreTrainedConfig,
        transformers.GenerationConfig,
    ]
    for owner in owners:
        original = owner.__dict__["from_pretrained"].__func__

        def from_pretrained(cls, name_or_path, *args, __original=original, **kwargs):
            target, redirected = served_path(name_or_path, recorder.model_dir)
            if redirected:
                for key in HUB_ONLY_KWARGS:
                    kwargs.pop(key, None)
                entry = {"class": cls.__name__, "requested": str(name_or_path)}
                if entry not in recorder.requests:
                    recorder.requests.append(entry)
            loaded = __original(cls, target, *args, **kwargs)
            if isinstance(loaded, transformers.PreTrainedModel):
                LOADED_MODELS.add(loaded)
            return loaded

        owner.from_pretrained = classmethod(from_pretrained)


def _patch_training(recorder: Recorder) -> None:
    import transformers
    from torch.optim.optimizer import register_optimizer_step_post_hook

    trainer_init = transformers.Trainer.__init__
    trainer_train = transformers.Trainer.train

    def init(self, *args, **kwargs):
        recorder.trainers_built += 1
        trainer_init(self, *args, **kwargs)

    def train(self, *args, **kwargs):
        recorder.train_calls += 1
        return trainer_train(self, *args, **kwargs)

    transformers.Trainer.__init__ = init
    transformers.Trainer.train = train

    meter = PairLossMeter(recorder)

    def count_step(optimizer, args, kwargs):
        recorder.optimizer_steps += 1
        steps = recorder.optimizer_steps
        if steps <= CURVE_EVERY_STEP or (steps <= MAX_CURVE_STEPS and steps % CURVE_STRIDE == 0):
            meter.measure(optimizer)

    register_optimizer_step_post_hook(count_step)


class PairLossMeter:
    """Measures the rubric pair's loss under the model an optimizer is training, for the report's loss curve.

    The model is the loaded model that owns the optimizer's first parameter; models are remembered as
    `from_pretrained` returns them. The measurement runs without gradients and in eval mode, then restores the
    mode, so training itself is unchanged.
    """

    def __init__(self, recorder: Recorder):
        self.recorder = recorder
        self.input_ids = None

    def measure(self, optimizer) -> None:
        import torch

        model = self._owner(optimizer)
        if model is None or not self.recorder.pair_text:
            return
        try:
            if self.input_ids is None:
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(self.recorder.model_dir)
                self.input_ids = torch.tensor([tokenizer(self.recorder.pair_text)["input_ids"]])
            training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    ids = self.input_ids.to(model.device)
                    loss = float(model(input_ids=ids, labels=ids).loss)
            finally:
                model.train(training)
        except Exception:  # noqa: BLE001 - the curve is evidence for the report; training must go on without it
            return
        self.recorder.loss_curve.append([self.recorder.optimizer_steps, round(loss, 4)])

    @staticmethod
    def _owner(optimizer):
        try:
            first = optimizer.param_groups[0]["params"][0]
        except (IndexError, KeyError, AttributeError):
            return None
        for model in list(LOADED_MODELS):
            if any(parameter is first for parameter in model.parameters()):
                return model
        return None


def _patch_generate(recorder: Recorder) -> None:
    from transformers import GenerationMixin

    original = GenerationMixin.generate
    cap = recorder.max_new_tokens

    def generate(self, *args, **kwargs):
        inputs = args[0] if args else kwargs.get("input_ids", kwargs.get("inputs"))
        prompt_length = int(inputs.shape[-1]) if hasattr(inputs, "shape") else 0
        config = kwargs.get("generation_config") or getattr(self, "generation_config", None)

        requested_new = kwargs.get("max_new_tokens")
        requested_length = kwargs.pop("max_length", None)
        if requested_new is None and requested_length is not None:
            requested_new = requested_length - prompt_length
        if requested_new is None and config is not None:
            requested_new = config.max_new_tokens
            if requested_new is None and config.max_length is not None:
                requested_new = config.max_length - prompt_length
        if requested_new is None or requested_new > cap:
            shown = f"max_length={requested_length}" if requested_length is not None else f"{requested_new} new tokens"
            if shown not in recorder.generate_capped:
                recorder.generate_capped.append(shown)
            requested_new = cap
        kwargs["max_new_tokens"] = max(int(requested_new), 1)
        return original(self, *args, **kwargs)

    GenerationMixin.generate = generate


def _patch_gradio(recorder: Recorder) -> None:
    import gradio

    original = gradio.Blocks.launch

    def launch(self, *args, **kwargs):
        recorded = {key: value for key, value in kwargs.items() if isinstance(value, (bool, int, float, str, type(None)))}
        recorder.launches.append(recorded)
        # Not started here: the interface check starts it on 127.0.0.1 itself, so a launch in the
        # notebook neither blocks the run nor tries to reach the internet for a share link.
        return None, None, None

    gradio.Blocks.launch = launch
    gradio.Blocks._grader_original_launch = original


class _Anything(types.SimpleNamespace):
    """Stands in for any `google.colab` helper: every attribute and call returns another stand-in."""

    def __init__(self, path: str, recorder: Recorder):
        super().__init__()
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_recorder", recorder)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything(f"{self._path}.{name}", self._recorder)

    def __call__(self, *args, **kwargs):
        self._recorder.colab_calls.append(self._path)
        return _Anything(f"{self._path}()", self._recorder)

    def __bool__(self) -> bool:
        return False

    def __iter__(self):
        return iter(())


class _ColabModule(types.ModuleType):
    def __init__(self, name: str, recorder: Recorder):
        super().__init__(name)
        self.__path__ = []
        self._recorder = recorder

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything(f"{self.__name__}.{name}", self._recorder)


def _install_colab_stub(recorder: Recorder) -> None:
    try:
        import google  # noqa: F401 - a real namespace package (protobuf) may already provide it
    except ImportError:
        google = types.ModuleType("google")
        google.__path__ = []
        sys.modules["google"] = google
    colab = _ColabModule("google.colab", recorder)
    sys.modules["google.colab"] = colab
    sys.modules["google"].colab = colab
    for name in ("drive", "files", "output", "userdata", "auth", "data_table"):
        submodule = _ColabModule(f"google.colab.{name}", recorder)
        sys.modules[submodule.__name__] = submodule
        setattr(colab, name, submodule)


class FakeIPython:
    """Stand-in for `get_ipython()`: records the rewritten magics and runs no shell command."""

    # Cell magics whose body is ordinary Python that the notebook needs (timing and output capture).
    BODY_MAGICS = ("capture", "time", "timeit")

    def __init__(self, recorder: Recorder, run_python):
        self._recorder = recorder
        self._run_python = run_python
        self.user_ns: dict = {}

    def system(self, command: str) -> None:
        self._recorder.magics_seen.append(f"!{command}")

    def getoutput(self, command: str) -> list[str]:
        self._recorder.magics_seen.append(f"!{command}")
        return []

    def run_line_magic(self, name: str, line: str, *args) -> None:
        self._recorder.magics_seen.append(f"%{name} {line}".strip())

    def run_cell_magic(self, name: str, line: str, body: str) -> None:
        self._recorder.magics_seen.append(f"%%{name} {line}".strip())
        if name in self.BODY_MAGICS:
            self._run_python(body)
        elif name == "writefile" and line.strip():
            target = Path(line.split()[-1])
            target.write_text(body, encoding="utf-8")
