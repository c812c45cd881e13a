"""Read a submission (`.ipynb`, or `.py` as exported by Colab, nbconvert or jupytext) into cells of plain Python.

Shell escapes and IPython magics are rewritten by IPython's own input transformer into `get_ipython()` calls,
which the runner records without running anything; the original lines are kept so reports can list them.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import nbformat

MAX_SOURCE_BYTES = 20 * 1024 * 1024

PERCENT_MARKER = re.compile(r"^# %%(?P<rest>.*)$", re.MULTILINE)
NBCONVERT_MARKER = re.compile(r"^# In\[[ \d]*\]:\s*$", re.MULTILINE)
MAGIC_LINE = re.compile(r"^\s*(!|%)")


class SubmissionError(Exception):
    """A submission file that cannot be read as a notebook or a script; the message names the fix."""


@dataclass
class Cell:
    """One notebook cell; for code cells `python` is the source with magics rewritten."""

    index: int
    kind: Literal["code", "markdown"]
    source: str
    python: str = ""
    magics: list[str] = field(default_factory=list)
    # Notebook cell tags; the assignment tags each graded part's cells `part:NAME`, which survives moved cells.
    tags: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"cell {self.index}"


@dataclass
class Program:
    """A submission's cells, in the order the student wrote them."""

    path: Path
    cells: list[Cell]

    @property
    def code_cells(self) -> list[Cell]:
        return [cell for cell in self.cells if cell.kind == "code"]

    @property
    def markdown_cells(self) -> list[Cell]:
        return [cell for cell in self.cells if cell.kind == "markdown"]

    @property
    def magics(self) -> list[str]:
        return [f"{cell.label}: {line}" for cell in self.code_cells for line in cell.magics]


def load_program(path: Path) -> Program:
    """Read `path` into cells.

    Raises:
        SubmissionError: the file is too large, not UTF-8, not valid JSON, or not a valid notebook.
    """
    size = path.stat().st_size
    if size > MAX_SOURCE_BYTES:
        raise SubmissionError(
            f"{path.name} is {size / 2**20:.0f} MiB, over the {MAX_SOURCE_BYTES // 2**20} MiB limit for a submission; "
            "clear the notebook's outputs (Edit > Clear all outputs) and export it again"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise SubmissionError(f"{path.name} is not UTF-8 text ({error}); export it again from Colab or Jupyter") from None

    if path.suffix == ".ipynb":
        cells = _notebook_cells(path, text)
    else:
        cells = _script_cells(text)
    for cell in cells:
        if cell.kind == "code":
            cell.python, cell.magics = rewrite_magics(cell.source)
    return Program(path=path, cells=cells)


def _notebook_cells(path: Path, text: str) -> list[Cell]:
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        raise SubmissionError(
            f"{path.name} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
            "download the notebook again with File > Download > Download .ipynb"
        ) from None
    try:
        notebook = nbformat.reads(text, as_version=4)
        nbformat.validate(notebook)
    except (nbformat.ValidationError, nbformat.reader.NotJSONError, KeyError, TypeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SubmissionError(
            f"{path.name} is not a valid Jupyter notebook ({first_line}); "
            "open it in Colab or Jupyter and save it again"
        ) from None

    cells = []
    for number, cell in enumerate(notebook.cells, start=1):
        if cell.cell_type in ("code", "markdown"):
            tags = cell.get("metadata", {}).get("tags", [])
            cells.append(Cell(index=number, kind=cell.cell_type, source=cell.source,
                              tags=[tag for tag in tags if isinstance(tag, str)]))
    return cells


def _script_cells(text: str) -> list[Cell]:
    if PERCENT_MARKER.search(text):
        return _percent_cells(text)
    if NBCONVERT_MARKER.search(text):
        parts = NBCONVERT_MARKER.split(text)
        return [Cell(index=i, kind="code", source=part.strip("\n")) for i, part in enumerate(parts, 1) if part.strip()]
    return _docstring_cells(text)


def _percent_cells(text: str) -> list[Cell]:
    """Split jupytext's percent format: `# %%` opens a code cell, `# %% [markdown]` a markdown cell."""
    blocks: list[tuple[str, list[str]]] = [("code", [])]
    for line in text.splitlines():
        marker = PERCENT_MARKER.match(line)
        if marker:
            blocks.append(("markdown" if "[markdown]" in marker.group("rest") else "code", []))
        else:
            blocks[-1][1].append(line)

    cells: list[Cell] = []
    for kind, lines in blocks:
        if kind == "markdown":
            lines = [re.sub(r"^# ?", "", line) for line in lines]
        body = "\n".join(lines).strip("\n")
        if body.strip():
            cells.append(Cell(index=len(cells) + 1, kind=kind, source=body))
    return cells


def _docstring_cells(text: str) -> list[Cell]:
    """Split a Colab `.py` export: its markdown cells are module-level string literals between the code."""
    python, _ = rewrite_magics(text)
    try:
        tree = ast.parse(python)
    except SyntaxError:
        return [Cell(index=1, kind="code", source=text)]

    source_lines = text.splitlines()
    if len(python.splitlines()) != len(source_lines):
        # The rewrite changed the line count (cell magics), so line numbers cannot map back: keep one cell.
        return [Cell(index=1, kind="code", source=text)]

    cells: list[Cell] = []
    code_start = 0
    for node in tree.body:
        is_text = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        if not is_text:
            continue
        _append_code(cells, source_lines[code_start : node.lineno - 1])
        cells.append(Cell(index=len(cells) + 1, kind="markdown", source=node.value.value.strip("\n")))
        code_start = node.end_lineno or node.lineno
    _append_code(cells, source_lines[code_start:])
    return cells


def _append_code(cells: list[Cell], lines: list[str]) -> None:
    code = "\n".join(lines).strip("\n")
    if any(line.strip() and not line.lstrip().startswith("#") for line in lines):
        cells.append(Cell(index=len(cells) + 1, kind="code", source=code))


def rewrite_magics(source: str) -> tuple[str, list[str]]:
    """Return `source` with shell escapes and magics turned into `get_ipython()` calls, and the magic lines found."""
    from IPython.core.inputtransformer2 import TransformerManager

    magics = [line.strip() for line in source.splitlines() if MAGIC_LINE.match(line)]
    if not magics:
        return source, []
    return TransformerManager().transform_cell(source), magics
