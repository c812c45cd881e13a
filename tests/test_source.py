"""Reading notebooks and scripts into cells."""

from __future__ import annotations

import json

import pytest

from harness.source import SubmissionError, load_program
from tests.conftest import EXAMPLES, REFERENCE, write_notebook


def test_notebook_magics_rewritten_and_listed(tmp_path):
    path = write_notebook(tmp_path / "n.ipynb", [
        ("markdown", "# Title"),
        ("code", "!pip install transformers\n%matplotlib inline\nx = 1"),
        ("code", "%%capture\n!pip install gradio\ny = 2"),
    ])
    program = load_program(path)
    assert [cell.kind for cell in program.cells] == ["markdown", "code", "code"]
    first = program.code_cells[0]
    assert "get_ipython().system('pip install transformers')" in first.python
    assert first.magics == ["!pip install transformers", "%matplotlib inline"]
    assert program.magics == ["cell 2: !pip install transformers", "cell 2: %matplotlib inline",
                              "cell 3: %%capture", "cell 3: !pip install gradio"]
    compile(program.code_cells[1].python, "<cell>", "exec")


def test_percent_script_cells():
    program = load_program(REFERENCE)
    kinds = [cell.kind for cell in program.cells]
    assert kinds.count("code") == 5
    assert program.cells[0].kind == "markdown"
    assert program.cells[0].source.startswith("# Reference solution")


def test_colab_export_split_at_docstrings():
    program = load_program(EXAMPLES / "grace_colab_export.py")
    code = program.code_cells
    assert len(code) == 5
    assert code[0].magics == ["!pip install -q transformers datasets gradio"]
    assert any("Answer 1.1" in cell.source for cell in program.markdown_cells)


def test_invalid_json_names_the_fix(tmp_path):
    path = tmp_path / "broken.ipynb"
    path.write_text('{"cells": [', encoding="utf-8")
    with pytest.raises(SubmissionError, match=r"broken.ipynb is not valid JSON \(line 1.*Download .ipynb"):
        load_program(path)


def test_schema_violation_rejected(tmp_path):
    path = tmp_path / "odd.ipynb"
    path.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                                "cells": [{"cell_type": "code", "source": "x = 1"}]}), encoding="utf-8")
    with pytest.raises(SubmissionError, match="odd.ipynb is not a valid Jupyter notebook"):
        load_program(path)


def test_oversized_file_rejected(tmp_path, monkeypatch):
    monkeypatch.setattr("harness.source.MAX_SOURCE_BYTES", 10)
    path = tmp_path / "big.py"
    path.write_text("x = 1\n" * 10, encoding="utf-8")
    with pytest.raises(SubmissionError, match="over the 0 MiB limit"):
        load_program(path)
