"""--device: CUDA only where torch finds a GPU, and the number of jobs that fit in a GPU's memory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.device import OVERHEAD_BYTES, DeviceError, gpu_jobs, resolve_device
from harness.execute.sandbox import bwrap_command

GIB = 2**30


def test_auto_picks_what_torch_sees():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(DeviceError) as raised:
        resolve_device("cuda")
    assert "sees no GPU; grade with --device cpu" in str(raised.value)
    with pytest.raises(SystemExit) as exited:
        main([str(tmp_path), "--device", "cuda"])
    assert exited.value.code == 2
    assert "--device cuda, but torch" in capsys.readouterr().err


def test_jobs_fit_in_gpu_memory(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\0" * (1 << 20))
    per_job = 4 * (1 << 20) + OVERHEAD_BYTES
    assert gpu_jobs(8, tmp_path, int(3 * per_job) + 1) == 3
    assert gpu_jobs(2, tmp_path, 100 * GIB) == 2
    assert gpu_jobs(4, tmp_path, 0) == 1


def test_sandbox_binds_gpu_devices_only_when_asked():
    common = dict(readable=[], writable=[], workdir=Path("/tmp"), argv=["true"], env={})
    assert "--dev-bind" not in bwrap_command(**common)
    command = bwrap_command(**common, devices=[Path("/dev/nvidia0"), Path("/dev/nvidiactl")])
    binds = [command[index + 1] for index, part in enumerate(command) if part == "--dev-bind"]
    assert binds == ["/dev/nvidia0", "/dev/nvidiactl"]
