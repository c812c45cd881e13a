"""Device choice for grading (`--device auto|cpu|cuda`) and the number of submissions a GPU holds at once."""

from __future__ import annotations

import logging
import math
from pathlib import Path

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
# Fine-tuning in float32 with Adam keeps the weights, their gradients and two moment estimates: four copies.
TRAINING_COPIES = 4
# Activations, the CUDA context and the grader's own copy for measuring the loss, per submission.
OVERHEAD_BYTES = 1.5 * 2**30


class DeviceError(ValueError):
    """A device that this machine cannot provide."""


def resolve_device(requested: str) -> str:
    """Return `cpu` or `cuda` for `requested`: `auto` picks CUDA when torch finds a GPU."""
    import torch

    if requested not in DEVICES:
        raise DeviceError(f"--device {requested!r} is not one of {', '.join(DEVICES)}")
    available = torch.cuda.is_available()
    if requested == "auto":
        return "cuda" if available else "cpu"
    if requested == "cuda" and not available:
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise DeviceError(f"--device cuda, but torch {torch.__version__} ({build}) sees no GPU; grade with "
                          "--device cpu, or install a CUDA build of torch on a machine with a GPU")
    return requested


def weights_bytes(model_dir: Path) -> int:
    return sum(path.stat().st_size for path in model_dir.glob("*.safetensors"))


def gpu_jobs(requested: int, model_dir: Path, free_bytes: int) -> int:
    """Return how many submissions fit in `free_bytes` of GPU memory at once, at most `requested`, at least 1."""
    per_job = TRAINING_COPIES * weights_bytes(model_dir) + OVERHEAD_BYTES
    fitting = max(1, math.floor(free_bytes / per_job))
    return min(requested, fitting)


def fit_jobs_to_gpu(requested: int, model_dir: Path) -> int:
    """`requested` lowered to what the first GPU's free memory holds, with a log line when it is lowered."""
    import torch

    free, _ = torch.cuda.mem_get_info()
    jobs = gpu_jobs(requested, model_dir, free)
    if jobs < requested:
        logger.warning("--jobs %d lowered to %d: the GPU has %.1f GiB free and each submission needs about %.1f GiB",
                       requested, jobs, free / 2**30,
                       (TRAINING_COPIES * weights_bytes(model_dir) + OVERHEAD_BYTES) / 2**30)
    return jobs


def device_nodes() -> list[Path]:
    """Return the NVIDIA device files a sandboxed submission needs to reach the GPU."""
    return sorted(path for path in Path("/dev").glob("nvidia*") if not path.is_dir())
