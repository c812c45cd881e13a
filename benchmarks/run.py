"""Measure the grader against the bare work it wraps; write benchmarks/results.json and print a table.

Usage: python benchmarks/run.py [--quick]. See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "submissions"
# Lab-style examples that finish by themselves (erin's endless training only measures the time limit).
CLASS_MIX = ("alice_correct.ipynb", "bob_textdataset.ipynb", "carol_no_training.ipynb", "dave_lossy_tokenizer.ipynb",
             "frank_syntax_error.ipynb", "grace_colab_export.py", "henry_cuda.ipynb")


def make_class(folder: Path, size: int, names=CLASS_MIX) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(size):
        source = EXAMPLES / names[number % len(names)]
        shutil.copy(source, folder / f"student{number:03d}{source.suffix}")
    return folder


class PeakMemory(threading.Thread):
    """Samples the peak resident memory (VmHWM) of the grader process and of its submission processes."""

    def __init__(self, grader_pid: int):
        super().__init__(daemon=True)
        self.grader_pid = grader_pid
        self.grader_kib = 0
        self.submission_kib = 0
        self.running = True

    @staticmethod
    def peak_kib(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def run(self) -> None:
        while self.running:
            self.grader_kib = max(self.grader_kib, self.peak_kib(self.grader_pid))
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    command = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if b"harness.execute.zygote" in command and b"bwrap" not in command.split(b"\0")[0]:
                    self.submission_kib = max(self.submission_kib, self.peak_kib(int(entry.name)))
            time.sleep(0.5)


def run_grader(folder: Path, model: str, jobs: int, extra: list[str] | None = None) -> dict:
    out = Path(tempfile.mkdtemp(prefix="bench-out-"))
    command = [str(ROOT / ".venv" / "bin" / "grade"), str(folder), "--model", model, "--out", str(out),
               "--jobs", str(jobs), "--cell-timeout", "120", *(extra or [])]
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    memory = PeakMemory(process.pid)
    memory.start()
    output, _ = process.communicate()
    seconds = time.monotonic() - started
    memory.running = False
    if process.returncode != 0:
        raise RuntimeError(f"grade failed ({process.returncode}): {output[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": round(seconds, 1), "submissions": len(summary["submissions"]),
            "grader_peak_mib": round(memory.grader_kib / 1024), "submission_peak_mib": round(memory.submission_kib / 1024)}


def run_bare(model_folder: Path, copies: int) -> float:
    started = time.monotonic()
    for _ in range(copies):
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bare_lab.py"), str(model_folder)], check=True,
                       capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return round(time.monotonic() - started, 1)


def run_naive(folder: Path, model_folder: Path) -> float:
    """Execute each notebook with nbclient in a fresh kernel, as a naive grader would; no checks at all."""
    import nbformat
    from nbclient import NotebookClient

    started = time.monotonic()
    for path in sorted(folder.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                lines = [line for line in cell.source.splitlines() if not line.lstrip().startswith(("!", "%"))]
                cell.source = "\n".join(lines).replace("microsoft/DialoGPT-medium", str(model_folder))
        workdir = Path(tempfile.mkdtemp(prefix="bench-naive-"))
        client = NotebookClient(notebook, timeout=600, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": str(workdir)}})
        client.execute()
        shutil.rmtree(workdir, ignore_errors=True)
    return round(time.monotonic() - started, 1)


# DialoGPT-medium, the lab's model: 24 layers of width 1024 and a 50,257-token vocabulary (its config.json).
DIALOGPT_MEDIUM_PARAMETERS = 354.8e6
# The GPU the estimate assumes: an NVIDIA T4, common on CI runners (NVIDIA's data sheet: 8.1 TFLOPS FP32 peak,
# 320 GB/s memory bandwidth, 16 GB). The utilisations are assumptions for batch-1 work, not measurements.
GPU = {"name": "NVIDIA T4", "fp32_flops": 8.1e12, "bandwidth": 320e9, "memory_gib": 16,
       "training_utilisation": 0.3, "bandwidth_utilisation": 0.6}
# Work of one lab submission: 11 optimizer steps of 128 tokens (the pair repeated 100 times), and about
# 10 replies of 48 new tokens (the grader's 4, the interface check's 1, and the notebook's own).
LAB_STEPS, LAB_STEP_TOKENS, LAB_NEW_TOKENS = 11, 128, 10 * 48


def measure_step_costs(model_folder: Path) -> dict:
    """Time training steps (batch 1, 128 tokens) and greedy generation of the default model on this machine."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_folder)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    ids = torch.randint(0, model.config.vocab_size, (1, LAB_STEP_TOKENS))
    timings = []
    for step in range(6):
        started = time.monotonic()
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step:
            timings.append(time.monotonic() - started)
    step_seconds = sum(timings) / len(timings)
    model.eval()
    prompt = ids[:, :12]
    with torch.no_grad():
        model.generate(prompt, max_new_tokens=4, do_sample=False, pad_token_id=0)
        started = time.monotonic()
        model.generate(prompt, max_new_tokens=48, min_new_tokens=48, do_sample=False, pad_token_id=0)
    token_seconds = (time.monotonic() - started) / 48

    # The tuned weights' way to the grader: the probe writes safetensors, the grader loads them.
    from safetensors.torch import save_model

    folder = Path(tempfile.mkdtemp(prefix="bench-weights-"))
    started = time.monotonic()
    save_model(model, str(folder / "model.safetensors"))
    model.config.to_json_file(str(folder / "config.json"))
    AutoModelForCausalLM.from_pretrained(folder)
    transfer_seconds = time.monotonic() - started
    shutil.rmtree(folder, ignore_errors=True)
    return {"parameters": parameters, "step_seconds": round(step_seconds, 3), "token_seconds": round(token_seconds, 4),
            "cpu_training_flops": round(6 * parameters * LAB_STEP_TOKENS / step_seconds / 1e9, 1),
            "transfer_seconds": round(transfer_seconds, 2)}


def gpu_estimate(costs: dict, overhead_seconds: float, submissions: int = 200) -> dict:
    """Expected time for `submissions` on DialoGPT-medium on one GPU, from the costs measured here.

    Training time scales with the FLOPs of a step (6 x parameters x tokens) at the assumed utilisation. Generation
    is bound by memory, because every weight is read once per token. The grader's own work per submission (the worker's fork,
    the probes, the Gradio round trip) is the per-submission time measured here on the tiny model, where
    compute is small, plus the measured transfer of the tuned weights scaled to the model's size. That work runs
    on the CPU whatever the device.
    """
    step = 6 * DIALOGPT_MEDIUM_PARAMETERS * LAB_STEP_TOKENS / (GPU["fp32_flops"] * GPU["training_utilisation"])
    token = DIALOGPT_MEDIUM_PARAMETERS * 4 / (GPU["bandwidth"] * GPU["bandwidth_utilisation"])
    compute = LAB_STEPS * step + LAB_NEW_TOKENS * token
    # Writing and loading the tuned weights grows with the model; the measured time is scaled by parameters.
    transfer = costs["transfer_seconds"] * DIALOGPT_MEDIUM_PARAMETERS / costs["parameters"]
    per_submission = compute + overhead_seconds + transfer
    # Four float32 copies of the weights for Adam training, plus activations and the CUDA context.
    job_gib = 4 * DIALOGPT_MEDIUM_PARAMETERS * 4 / 2**30 + 1.5
    jobs = max(1, min(2, int(GPU["memory_gib"] // job_gib)))
    return {
        "gpu": GPU, "submissions": submissions, "step_seconds": round(step, 3), "token_seconds": round(token, 4),
        "compute_seconds_per_submission": round(compute, 1), "overhead_seconds_per_submission": overhead_seconds,
        "transfer_seconds_per_submission": round(transfer, 1),
        "jobs": jobs, "minutes_jobs_1": round(submissions * per_submission / 60, 1),
        "minutes_best": round(submissions * per_submission / jobs / 60, 1),
        "cpu_step_seconds_scaled": round(costs["step_seconds"] * DIALOGPT_MEDIUM_PARAMETERS / costs["parameters"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller classes (5 and 10) and no default-model batch")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from harness.models import resolve_model

    tiny_folder = resolve_model("tiny-gpt2").path
    default_folder = resolve_model("smollm2-135m-instruct").path
    results: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(terse=True),
                                 "python": platform.python_version()}}
    work = Path(tempfile.mkdtemp(prefix="bench-"))

    print("default model: one correct submission, grader against bare compute", flush=True)
    single = make_class(work / "single", 1, names=("alice_correct.ipynb",))
    graded = run_grader(single, "smollm2-135m-instruct", jobs=1)
    bare = run_bare(default_folder, 1)
    results["default_single"] = {**graded, "bare_seconds": bare, "ratio": round(graded["seconds"] / bare, 2)}
    if not args.quick:
        three = make_class(work / "three", 3, names=("alice_correct.ipynb",))
        graded = run_grader(three, "smollm2-135m-instruct", jobs=1)
        bare = run_bare(default_folder, 3)
        results["default_three"] = {**graded, "bare_seconds": bare, "ratio": round(graded["seconds"] / bare, 2)}

    batch_size = 10 if args.quick else 20
    print(f"tiny model: batch of {batch_size} against nbclient", flush=True)
    batch = make_class(work / "batch", batch_size, names=tuple(name for name in CLASS_MIX if name.endswith(".ipynb")))
    graded = run_grader(batch, "tiny-gpt2", jobs=2)
    naive = run_naive(batch, tiny_folder)
    results["tiny_batch"] = {**graded, "naive_seconds": naive, "ratio": round(graded["seconds"] / naive, 2),
                             "per_minute": round(60 * graded["submissions"] / graded["seconds"], 1)}

    results["scaling"] = []
    for size in ((5, 10) if args.quick else (5, 20, 50)):
        for jobs in (1, 2):
            print(f"tiny model: {size} submissions, --jobs {jobs}", flush=True)
            graded = run_grader(make_class(work / f"class{size}", size), "tiny-gpt2", jobs=jobs)
            results["scaling"].append({"size": size, "jobs": jobs, **graded,
                                       "per_minute": round(60 * size / graded["seconds"], 1)})

    print("per-step costs of the default model, and the GPU estimate", flush=True)
    costs = measure_step_costs(default_folder)
    one_job = [entry for entry in results["scaling"] if entry["jobs"] == 1]
    overhead = round(one_job[-1]["seconds"] / one_job[-1]["size"], 2)
    results["step_costs"] = costs
    results["gpu_estimate"] = gpu_estimate(costs, overhead)

    shutil.rmtree(work, ignore_errors=True)
    (ROOT / "benchmarks" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
