"""Build the student notebook from the reference solution: solution code becomes stubs, answers become placeholders.

The reference is a percent-format script, split into cells as `harness.source` splits it: `# %%` opens a code
cell and `# %% [markdown]` a markdown cell. Jupytext's `key=value` cell metadata may follow on the marker line,
with JSON values, for example `# %% tags=["part:model"]`.

A solution region in a code cell is

    # BEGIN SOLUTION
    # HINT: what the student writes here
    ...
    # END SOLUTION

and becomes `raise NotImplementedError("what the student writes here")` at the indentation of the BEGIN line, so a
function keeps its `def` line and gets the `raise` as its body. In a markdown cell the markers are HTML comments
(`<!-- BEGIN SOLUTION -->`, `<!-- HINT: ... -->`, `<!-- END SOLUTION -->`), which rendered markdown hides. A
markdown region contains a written answer that starts with an `**Answer N.M:**` label. The student notebook keeps
the label, followed by a placeholder that the exercises check does not count as an answer.

A cell tagged `reference-only` (for example the reference's own title) is left out of the student notebook.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from harness.checks.exercises import MARKER as EXERCISE_MARKER
from harness.records import CHECK_IDS, PROJECT_CHECK_IDS
from harness.source import PERCENT_MARKER, rewrite_magics

logger = logging.getLogger(__name__)

DEFAULT_REFERENCE = Path("reference/lab_solution.py")
DEFAULT_ASSIGNMENT = Path("assignments/lab.ipynb")

# Version of the notebook layout (self-check cells, tags, metadata), stored in the notebook's metadata.
FORMAT_VERSION = 1
METADATA_KEY = "lab_grader"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}

# One tag per graded part, named after the first word of its check ids: part:model, part:tokenization, ...
PART_TAGS = tuple(dict.fromkeys(f"part:{check_id.split('.')[0]}" for check_id in (*CHECK_IDS, *PROJECT_CHECK_IDS)))
PROJECT_TAG = "part:project"
# The final project's written part: one answer, labelled like the lab's exercises.
DISCUSSION_LABEL = re.compile(r"^\*\*Discussion:\*\*")
EXERCISES_TAG = "part:exercises"
REFERENCE_ONLY_TAG = "reference-only"

SELF_CHECK_COMMAND = "grade check lab.ipynb"
# The final project has no hidden checks, so its students run the instructor's command on their own notebook.
PROJECT_CHECK_COMMAND = "grade project final_project.ipynb --out self-check"
SELF_CHECK_TEMPLATE = """## Checking your work

Run the next cell, or `{command}` in a terminal, to run the grader's automatic checks on this notebook
and see which parts pass. The grader skips lines that start with `!`, so the cell does nothing when your
submission is graded.

Every `raise NotImplementedError(...)` marks code for you to write: replace it with your own code and keep the
variable and function names around it. For each exercise, replace the _Your answer here_ line with your answer
and keep its bold label (for example **Answer 1.1:**). The grader finds each answer by that label, so answer
cells may be moved."""
SELF_CHECK_TEXT = SELF_CHECK_TEMPLATE.format(command=SELF_CHECK_COMMAND)
SELF_CHECK_CODE = f"!{SELF_CHECK_COMMAND}"

EXIT_OK, EXIT_DIFFERENT, EXIT_USAGE = 0, 1, 2

CellKind = Literal["code", "markdown"]


class AssignmentError(Exception):
    """A reference that cannot be turned into the student notebook; the message names the file and line."""


@dataclass(frozen=True)
class Markers:
    """Solution-marker syntax of one cell kind. The `begin` pattern captures the indentation of the region."""

    begin: re.Pattern
    hint: re.Pattern
    end: re.Pattern


CODE_MARKERS = Markers(
    begin=re.compile(r"^(?P<indent>[ \t]*)#\s*BEGIN SOLUTION\s*$"),
    hint=re.compile(r"^[ \t]*#\s*HINT:\s*(?P<text>.*?)\s*$"),
    end=re.compile(r"^(?P<indent>[ \t]*)#\s*END SOLUTION\s*$"),
)
MARKDOWN_MARKERS = Markers(
    begin=re.compile(r"^(?P<indent>\s*)<!--\s*BEGIN SOLUTION\s*-->\s*$"),
    hint=re.compile(r"^\s*<!--\s*HINT:\s*(?P<text>.*?)\s*-->\s*$"),
    end=re.compile(r"^(?P<indent>\s*)<!--\s*END SOLUTION\s*-->\s*$"),
)
# A line that mentions a marker but does not match the syntax above is a misspelt marker, which is rejected.
MARKER_WORDS = re.compile(r"\b(BEGIN|END) SOLUTION\b")
METADATA_ITEM = re.compile(r"\s*(?P<key>[A-Za-z_][\w.-]*)=")


@dataclass(frozen=True)
class ReferenceCell:
    """One cell of the reference, with the file line number of the first line of `source` for messages."""

    kind: CellKind
    source: str
    line: int
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Region:
    """A solution region: indexes of its BEGIN and END lines within the cell's source lines."""

    begin: int
    end: int
    indent: str
    hint: str


def read_reference(path: Path) -> list[ReferenceCell]:
    """Split a percent-format script into cells, with the metadata written on each `# %%` line.

    The split matches `harness.source.load_program`: the same markers, `# ` removed from markdown lines, blank
    lines around a cell dropped, and empty cells left out.

    Raises:
        AssignmentError: the file has no `# %%` markers or a marker line has metadata that cannot be read.
    """
    text = path.read_text(encoding="utf-8")
    if not PERCENT_MARKER.search(text):
        raise AssignmentError(f"{path} has no `# %%` cell markers; the reference must be a percent-format script")

    blocks: list[tuple[CellKind, dict, int, list[str]]] = [("code", {}, 1, [])]
    for number, line in enumerate(text.splitlines(), start=1):
        marker = PERCENT_MARKER.match(line)
        if not marker:
            blocks[-1][3].append(line)
            continue
        rest = marker.group("rest")
        kind: CellKind = "markdown" if "[markdown]" in rest else "code"
        metadata = parse_metadata(rest.replace("[markdown]", "", 1), f"{path}, line {number}")
        blocks.append((kind, metadata, number + 1, []))

    cells = []
    for kind, metadata, first_line, lines in blocks:
        if kind == "markdown":
            lines = [re.sub(r"^# ?", "", line) for line in lines]
        body = "\n".join(lines).strip("\n")
        if not body.strip():
            continue
        leading_blank = next(position for position, line in enumerate(lines) if line)
        cells.append(ReferenceCell(kind=kind, source=body, line=first_line + leading_blank, metadata=metadata))
    return cells


def parse_metadata(text: str, where: str) -> dict:
    """Read jupytext's `key=JSON` pairs, for example `tags=["part:model"]`, from the rest of a `# %%` line."""
    decoder = json.JSONDecoder()
    metadata = {}
    text = text.strip()
    position = 0
    while position < len(text):
        item = METADATA_ITEM.match(text, position)
        if not item:
            raise AssignmentError(f"{where}: the cell metadata {text[position:]!r} is not key=JSON; "
                                  'write it as, for example, tags=["part:model"]')
        try:
            value, position = decoder.raw_decode(text, item.end())
        except json.JSONDecodeError as error:
            raise AssignmentError(f"{where}: the value of {item.group('key')!r} is not valid JSON ({error.msg})"
                                  ) from None
        metadata[item.group("key")] = value
        while position < len(text) and text[position].isspace():
            position += 1
    tags = metadata.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise AssignmentError(f"{where}: tags must be a JSON list of strings, got {tags!r}")
    unknown = [tag for tag in tags if tag.startswith("part:") and tag not in PART_TAGS]
    if unknown:
        raise AssignmentError(f"{where}: unknown part tag {unknown[0]!r}; the graded parts are {', '.join(PART_TAGS)}")
    return metadata


def find_regions(cell: ReferenceCell, markers: Markers, where: str) -> list[Region]:
    """Find the cell's solution regions, checking that each has a HINT line and an END at its own indentation.

    Raises:
        AssignmentError: a marker is misspelt, unpaired, nested, or without its HINT line.
    """
    lines = cell.source.splitlines()
    regions = []
    open_begin: int | None = None
    indent = hint = ""
    for position, line in enumerate(lines):
        line_where = f"{where}, line {cell.line + position}"
        begin, end = markers.begin.match(line), markers.end.match(line)
        if begin:
            if open_begin is not None:
                raise AssignmentError(f"{line_where}: BEGIN SOLUTION inside the region opened at line "
                                      f"{cell.line + open_begin}; close that region with END SOLUTION first")
            hint_match = markers.hint.match(lines[position + 1]) if position + 1 < len(lines) else None
            if not hint_match or not hint_match.group("text"):
                raise AssignmentError(f"{line_where}: BEGIN SOLUTION must be followed by a HINT line that describes "
                                      "what to write, in the same comment style")
            open_begin, indent, hint = position, begin.group("indent"), hint_match.group("text")
        elif end:
            if open_begin is None:
                raise AssignmentError(f"{line_where}: END SOLUTION without a BEGIN SOLUTION before it")
            if cell.kind == "code" and end.group("indent") != indent:
                raise AssignmentError(f"{line_where}: END SOLUTION is not indented like the BEGIN SOLUTION at line "
                                      f"{cell.line + open_begin}; put both at the indentation of the code they enclose")
            regions.append(Region(begin=open_begin, end=position, indent=indent, hint=hint))
            open_begin = None
        elif MARKER_WORDS.search(line):
            raise AssignmentError(f"{line_where}: {line.strip()!r} is not a solution marker; write "
                                  f"{marker_examples(cell.kind)}")
        elif markers.hint.match(line) and (position == 0 or not markers.begin.match(lines[position - 1])):
            raise AssignmentError(f"{line_where}: a HINT line must come right after BEGIN SOLUTION")
    if open_begin is not None:
        raise AssignmentError(f"{where}, line {cell.line + open_begin}: BEGIN SOLUTION is never closed; "
                              "add END SOLUTION after the solution")
    return regions


def marker_examples(kind: CellKind) -> str:
    if kind == "code":
        return "`# BEGIN SOLUTION`, `# HINT: ...` and `# END SOLUTION` on lines of their own"
    return "`<!-- BEGIN SOLUTION -->`, `<!-- HINT: ... -->` and `<!-- END SOLUTION -->` on lines of their own"


def stub_code(cell: ReferenceCell, where: str) -> str:
    """Replace each solution region of a code cell by a `raise NotImplementedError` with the region's hint.

    Raises:
        AssignmentError: the markers are invalid, or the stubbed cell is not valid Python.
    """
    lines = cell.source.splitlines()
    for region in reversed(find_regions(cell, CODE_MARKERS, where)):
        # A JSON string literal is also a valid Python string literal, and it is always double-quoted.
        stub = f"{region.indent}raise NotImplementedError({json.dumps(region.hint, ensure_ascii=False)})"
        lines[region.begin:region.end + 1] = [stub]
    source = "\n".join(lines)

    try:
        ast.parse(rewrite_magics(source)[0])
    except SyntaxError as error:
        raise AssignmentError(f"{where}: without its solution the cell is not valid Python ({error.msg}, line "
                              f"{error.lineno} of the stub); put BEGIN and END SOLUTION around whole statements"
                              ) from None
    return source


def blank_answers(cell: ReferenceCell, where: str) -> tuple[str, list[str]]:
    """Replace each solution region of a markdown cell by its answer label and a placeholder.

    Returns:
        The new source and the exercise numbers of the answers it contains.

    Raises:
        AssignmentError: the markers are invalid, or a region does not start with an answer label.
    """
    lines = cell.source.splitlines()
    numbers = []
    for region in reversed(find_regions(cell, MARKDOWN_MARKERS, where)):
        body = [line for line in lines[region.begin + 2:region.end] if line.strip()]
        discussion = DISCUSSION_LABEL.match(body[0]) if body else None
        if discussion:
            lines[region.begin:region.end + 1] = [f"{discussion.group(0).rstrip()} _Your answer here. Hint: {region.hint}_"]
            continue
        label = EXERCISE_MARKER.match(body[0]) if body else None
        if not label or label.group("kind").lower() != "answer":
            raise AssignmentError(f"{where}, line {cell.line + region.begin}: a markdown solution region must "
                                  "start with its answer label, for example **Answer 1.1:** or **Discussion:**")
        # The exercises check ignores answers that contain "Your answer here", so the placeholder scores nothing.
        placeholder = f"{label.group(0).rstrip()} _Your answer here. Hint: {region.hint}_"
        lines[region.begin:region.end + 1] = [placeholder]
        numbers.insert(0, label.group("number"))
    return "\n".join(lines), numbers


def cell_id(position: int, kind: CellKind) -> str:
    """Derive a cell id from the cell's position and kind, so that building twice gives the same file."""
    return hashlib.sha256(f"{position}:{kind}".encode()).hexdigest()[:16]


def merge_tags(*groups: list[str]) -> list[str]:
    tags: list[str] = []
    for group in groups:
        tags.extend(tag for tag in group if tag not in tags)
    return tags


def build_assignment(reference: Path) -> nbformat.NotebookNode:
    """Build the student notebook from the reference script.

    The notebook starts with a markdown and code pair that explains the self-check command. Then come the
    reference's cells in order, without those tagged `reference-only`, with solution code replaced by stubs and
    answers by placeholders. Each cell of a graded part carries a `part:NAME` tag, and each answer cell carries
    `part:exercises` and `answer:N.M`. The notebook's metadata records the layout version under `lab_grader`.

    Raises:
        AssignmentError: the reference has invalid markers or metadata, a stub is not valid Python, or a code
            cell with a solution region has no part tag.
    """
    where = str(reference)
    reference_cells = read_reference(reference)
    project = any(PROJECT_TAG in cell.metadata.get("tags", []) for cell in reference_cells)
    command = PROJECT_CHECK_COMMAND if project else SELF_CHECK_COMMAND
    cells: list[tuple[CellKind, str, list[str]]] = [("markdown", SELF_CHECK_TEMPLATE.format(command=command), []),
                                                   ("code", f"!{command}", [])]
    for cell in reference_cells:
        tags = list(cell.metadata.get("tags", []))
        if REFERENCE_ONLY_TAG in tags:
            continue
        if cell.kind == "code":
            source = stub_code(cell, where)
            if source != cell.source and not any(tag in PART_TAGS for tag in tags):
                raise AssignmentError(f"{where}, line {cell.line}: this code cell has a solution region but no part "
                                      f'tag; add one to its marker line, for example # %% tags=["{PART_TAGS[1]}"]')
        else:
            source, numbers = blank_answers(cell, where)
            if numbers:
                tags = merge_tags(tags, [EXERCISES_TAG], [f"answer:{number}" for number in numbers])
        cells.append((cell.kind, source, tags))

    notebook = new_notebook(metadata={
        "kernelspec": dict(KERNELSPEC),
        "language_info": {"name": "python"},
        METADATA_KEY: {"version": FORMAT_VERSION},
    })
    for position, (kind, source, tags) in enumerate(cells):
        metadata = {"tags": tags} if tags else {}
        make = new_code_cell if kind == "code" else new_markdown_cell
        notebook.cells.append(make(source=source, id=cell_id(position, kind), metadata=metadata))
    nbformat.validate(notebook)
    return notebook


def write_assignment(reference: Path, out: Path) -> Path:
    """Build the student notebook from `reference`, validate it with nbformat and write it to `out`.

    Returns:
        `out`.
    """
    notebook = build_assignment(reference)
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, out)
    logger.info("wrote %s: %d cells", out, len(notebook.cells))
    return out


def describe_difference(committed: nbformat.NotebookNode, fresh: nbformat.NotebookNode) -> str | None:
    """Return where `committed` differs from `fresh` after nbformat's normalisation, or None when it does not."""
    if nbformat.writes(committed) == nbformat.writes(fresh):
        return None
    if committed.get("metadata") != fresh.metadata:
        return "its notebook metadata differs"
    committed_cells = committed.get("cells", [])
    if len(committed_cells) != len(fresh.cells):
        return f"it has {len(committed_cells)} cells where a fresh build has {len(fresh.cells)}"
    for position, (old, new) in enumerate(zip(committed_cells, fresh.cells), start=1):
        if old != new:
            return f"cell {position} differs"
    return "its nbformat version differs"


def check_assignment(reference: Path, out: Path) -> str | None:
    """Compare the notebook at `out` with a fresh build from `reference`, and return the difference or None."""
    fresh = build_assignment(reference)
    if not out.is_file():
        return "it does not exist"
    try:
        committed = nbformat.read(out, as_version=4)
    except (OSError, UnicodeDecodeError, nbformat.reader.NotJSONError, nbformat.ValidationError) as error:
        return f"it cannot be read as a notebook ({type(error).__name__}: {error})"
    return describe_difference(committed, fresh)


def assign_command(reference: Path, out: Path, check: bool = False) -> int:
    """Write the student notebook, or with `check` compare the file at `out` with a fresh build.

    Returns:
        0 when the notebook was written or is up to date, 1 when `check` found it missing or different,
        2 when the reference is missing or has invalid markers (the message is printed to stderr).
    """
    if not reference.is_file():
        print(f"grade assign: error: the reference {reference} does not exist; pass the solution script "
              "with --reference", file=sys.stderr)
        return EXIT_USAGE

    try:
        if check:
            problem = check_assignment(reference, out)
        else:
            write_assignment(reference, out)
            problem = None
    except AssignmentError as error:
        print(f"grade assign: error: {error}", file=sys.stderr)
        return EXIT_USAGE

    if problem:
        print(f"{out} is out of date with {reference}: {problem}. Run `grade assign` to rebuild it and commit "
              "the result.", file=sys.stderr)
        return EXIT_DIFFERENT
    if check:
        print(f"{out} is up to date with {reference}.")
    else:
        print(f"Wrote {out} from {reference}.")
    return EXIT_OK
