"""The student notebook built from the reference: committed copy, stubs, tags, marker errors, and its grades."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from harness.assign import (
    DEFAULT_ASSIGNMENT,
    PART_TAGS,
    PROJECT_TAG,
    REFERENCE_ONLY_TAG,
    SELF_CHECK_CODE,
    AssignmentError,
    assign_command,
    build_assignment,
    read_reference,
    write_assignment,
)
from harness.checks.exercises import find_answers
from harness.config import EXERCISES
from harness.records import CHECK_IDS
from harness.source import load_program, rewrite_magics
from tests.conftest import REFERENCE, ROOT, grade_folder

COMMITTED = ROOT / DEFAULT_ASSIGNMENT
# Marker lines of both comment styles, which a student's filled-in cell does not contain.
MARKER_LINE = re.compile(r"^\s*(#|<!--)\s*(BEGIN SOLUTION|END SOLUTION|HINT:)")
# The self-check markdown and code cells come before the reference's cells.
SELF_CHECK_CELLS = 2
MOVED_ANSWER = "4.1"


def normalised(notebook: nbformat.NotebookNode) -> str:
    return nbformat.writes(notebook)


def strip_markers(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if not MARKER_LINE.match(line))


def code_sources(notebook: nbformat.NotebookNode) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def tags_of(cell) -> list[str]:
    return cell.metadata.get("tags", [])


def fill_in(starter: Path, path: Path) -> Path:
    """Write the starter notebook with each stub and placeholder cell replaced by the reference cell, unmarked.

    The answer to MOVED_ANSWER is then moved to the top of the notebook, before its exercise.
    """
    notebook = nbformat.read(starter, as_version=4)
    reference_cells = [cell for cell in read_reference(REFERENCE)
                       if REFERENCE_ONLY_TAG not in cell.metadata.get("tags", [])]
    assert len(notebook.cells) == SELF_CHECK_CELLS + len(reference_cells)
    for cell, reference_cell in zip(notebook.cells[SELF_CHECK_CELLS:], reference_cells):
        assert cell.cell_type == reference_cell.kind
        if cell.source != reference_cell.source:
            cell.source = strip_markers(reference_cell.source)

    answer = next(cell for cell in notebook.cells if f"answer:{MOVED_ANSWER}" in tags_of(cell))
    notebook.cells.remove(answer)
    notebook.cells.insert(0, answer)
    nbformat.validate(notebook)
    nbformat.write(notebook, path)
    return path


def write_reference(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "reference.py"
    path.write_text(text, encoding="utf-8")
    return path


# Fast tests: building, comparing and rejecting references.

def test_committed_notebook_matches_build():
    committed = nbformat.read(COMMITTED, as_version=4)
    assert normalised(committed) == normalised(build_assignment(REFERENCE))


def test_check_mode_accepts_committed(capsys):
    assert assign_command(REFERENCE, COMMITTED, check=True) == 0
    assert "up to date" in capsys.readouterr().out


def test_check_mode_names_changed_file(tmp_path, capsys):
    out = write_assignment(REFERENCE, tmp_path / "lab.ipynb")
    notebook = nbformat.read(out, as_version=4)
    notebook.cells[5].source += "\nprint('edited by hand')"
    nbformat.write(notebook, out)

    assert assign_command(REFERENCE, out, check=True) == 1
    message = capsys.readouterr().err
    assert str(out) in message
    assert "cell 6 differs" in message


def test_check_mode_missing_file(tmp_path, capsys):
    missing = tmp_path / "lab.ipynb"
    assert assign_command(REFERENCE, missing, check=True) == 1
    assert f"{missing} is out of date" in capsys.readouterr().err
    assert not missing.exists()


def test_assign_writes_file(tmp_path):
    out = tmp_path / "nested" / "lab.ipynb"
    assert assign_command(REFERENCE, out) == 0
    assert out.read_text(encoding="utf-8") == COMMITTED.read_text(encoding="utf-8")


def test_missing_reference_is_usage_error(tmp_path, capsys):
    assert assign_command(tmp_path / "absent.py", tmp_path / "lab.ipynb") == 2
    assert "absent.py does not exist" in capsys.readouterr().err


def test_reader_splits_like_source_loader():
    cells = read_reference(REFERENCE)
    loaded = load_program(REFERENCE).cells
    assert [(cell.kind, cell.source) for cell in cells] == [(cell.kind, cell.source) for cell in loaded]


def test_reader_reports_first_line():
    lines = REFERENCE.read_text(encoding="utf-8").splitlines()
    for cell in read_reference(REFERENCE):
        first = cell.source.splitlines()[0]
        written = lines[cell.line - 1]
        assert written == first if cell.kind == "code" else re.sub(r"^# ?", "", written) == first


def test_build_is_deterministic():
    first, second = build_assignment(REFERENCE), build_assignment(REFERENCE)
    assert normalised(first) == normalised(second)
    ids = [cell.id for cell in first.cells]
    assert len(set(ids)) == len(ids)


def test_notebook_metadata():
    notebook = build_assignment(REFERENCE)
    assert notebook.metadata["lab_grader"] == {"version": 1}
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    assert notebook.nbformat == 4
    assert notebook.nbformat_minor >= 5


def test_self_check_cells_first():
    notebook = build_assignment(REFERENCE)
    assert notebook.cells[0].cell_type == "markdown"
    assert "grade check lab.ipynb" in notebook.cells[0].source
    assert notebook.cells[1].cell_type == "code"
    assert notebook.cells[1].source == SELF_CHECK_CODE
    assert rewrite_magics(notebook.cells[1].source)[1] == ["!grade check lab.ipynb"]


def test_every_code_cell_parses():
    for source in code_sources(build_assignment(REFERENCE)):
        ast.parse(rewrite_magics(source)[0])


def test_no_solution_left():
    notebook = build_assignment(REFERENCE)
    text = "\n".join(cell.source for cell in notebook.cells)
    assert "SOLUTION" not in text
    assert "HINT:" not in text
    code = "\n".join(code_sources(notebook))
    for solution in ("from_pretrained(MODEL_ID)", "add_special_tokens=False", "trainer.train()",
                     "model.generate(", "gr.Interface("):
        assert solution not in code


def test_function_stub_keeps_def():
    code = "\n".join(code_sources(build_assignment(REFERENCE)))
    assert 'def encode_text(text):\n    raise NotImplementedError("Return the list of token ids' in code
    assert 'def generate_response(input_text):\n    raise NotImplementedError("' in code
    assert "\nfine_tune_model(model, tokenizer)" in code


def test_module_level_stub_is_whole_cell():
    notebook = build_assignment(REFERENCE)
    model = next(cell for cell in notebook.cells if "part:model" in tags_of(cell))
    assert model.source.startswith('raise NotImplementedError("Load `tokenizer` with AutoTokenizer')
    assert "\n" not in model.source


def test_module_level_stub_after_code():
    notebook = build_assignment(REFERENCE)
    chatbot = next(cell for cell in notebook.cells if "part:interface" in tags_of(cell))
    last_line = chatbot.source.splitlines()[-1]
    assert last_line.startswith('raise NotImplementedError("Wrap generate_response in a gr.Interface')
    assert 'print(generate_response("Hello, how are you?"))' in chatbot.source


def test_reference_only_cell_left_out():
    notebook = build_assignment(REFERENCE)
    assert load_program(REFERENCE).cells[0].source.startswith("# Reference solution")
    assert not any("Reference solution" in cell.source for cell in notebook.cells)
    assert notebook.cells[SELF_CHECK_CELLS].source.startswith("# Lab: ")


def test_every_part_tagged():
    notebook = build_assignment(REFERENCE)
    tagged = {tag for cell in notebook.cells for tag in tags_of(cell)}
    assert set(PART_TAGS) - {PROJECT_TAG} <= tagged
    project = build_assignment(ROOT / "reference" / "final_project.py")
    assert PROJECT_TAG in {tag for cell in project.cells for tag in tags_of(cell)}
    assert project.cells[1].source == "!grade project final_project.ipynb --out self-check"
    assert len(set(PART_TAGS)) == len(PART_TAGS)
    for check_id in CHECK_IDS:
        assert f"part:{check_id.split('.')[0]}" in PART_TAGS
    stubs = [cell for cell in notebook.cells
             if cell.cell_type == "code" and "raise NotImplementedError" in cell.source]
    assert len(stubs) == 4
    for cell in stubs:
        assert any(tag in PART_TAGS for tag in tags_of(cell)), cell.source


def test_answer_cells_tagged_and_blank():
    notebook = build_assignment(REFERENCE)
    for number in EXERCISES:
        cells = [cell for cell in notebook.cells if f"answer:{number}" in tags_of(cell)]
        assert len(cells) == 1, number
        assert "part:exercises" in tags_of(cells[0])
        assert cells[0].source.startswith(f"**Answer {number}:** _Your answer here. Hint: ")


def test_placeholders_are_not_answers(tmp_path):
    out = write_assignment(REFERENCE, tmp_path / "lab.ipynb")
    assert find_answers(load_program(out)) == {number: None for number in EXERCISES}


def test_reference_answers_found():
    answers = find_answers(load_program(REFERENCE))
    assert all(answers.values()), answers


def test_jupytext_metadata_read(tmp_path):
    reference = write_reference(tmp_path, '# %% [markdown] tags=["intro", "x"]\n# Title\n\n'
                                          '# %% tags=["part:chatbot"] other={"a": 1}\nx = 1\n')
    cells = read_reference(reference)
    assert cells[0].metadata == {"tags": ["intro", "x"]}
    assert cells[1].metadata == {"tags": ["part:chatbot"], "other": {"a": 1}}


MODEL_STUB = '# %% tags=["part:model"]\n'
INVALID_REFERENCES = {
    "unclosed": (MODEL_STUB + "# BEGIN SOLUTION\n# HINT: load it\nmodel = 1\n", "never closed"),
    "no hint": (MODEL_STUB + "# BEGIN SOLUTION\nmodel = 1\n# END SOLUTION\n", "HINT line"),
    "empty hint": (MODEL_STUB + "# BEGIN SOLUTION\n# HINT:\nmodel = 1\n# END SOLUTION\n", "HINT line"),
    "stray end": (MODEL_STUB + "model = 1\n# END SOLUTION\n", "without a BEGIN"),
    "stray hint": (MODEL_STUB + "# HINT: load it\nmodel = 1\n", "right after BEGIN"),
    "nested": (MODEL_STUB + "# BEGIN SOLUTION\n# HINT: a\n# BEGIN SOLUTION\n# HINT: b\nx = 1\n# END SOLUTION\n"
               "# END SOLUTION\n", "inside the region"),
    "misspelt": (MODEL_STUB + "# BEGIN SOLUTION:\n# HINT: load it\nmodel = 1\n# END SOLUTION\n",
                 "is not a solution marker"),
    "indent mismatch": (MODEL_STUB + "def f():\n    # BEGIN SOLUTION\n    # HINT: a\n    return 1\n# END SOLUTION\n",
                        "not indented like"),
    "partial statement": (MODEL_STUB + "model = load(\n    # BEGIN SOLUTION\n    # HINT: a\n    1,\n"
                          "    # END SOLUTION\n)\n", "not valid Python"),
    "no part tag": ("# %%\n# BEGIN SOLUTION\n# HINT: load it\nmodel = 1\n# END SOLUTION\n", "no part tag"),
    "unknown part": ('# %% tags=["part:bonus"]\nx = 1\n', "unknown part tag"),
    "bad metadata": ("# %% title\nx = 1\n", "not key=JSON"),
    "bad json": ("# %% tags=[part]\nx = 1\n", "not valid JSON"),
    "no markers": ("x = 1\n", "no `# %%` cell markers"),
    "answer without label": ("# %% [markdown]\n# <!-- BEGIN SOLUTION -->\n# <!-- HINT: answer -->\n# Some text.\n"
                             "# <!-- END SOLUTION -->\n", "answer label"),
    "code marker in markdown": ("# %% [markdown]\n# # BEGIN SOLUTION\n# **Answer 1.1:** yes\n",
                                "not a solution marker"),
}


@pytest.mark.parametrize("case", sorted(INVALID_REFERENCES))
def test_invalid_reference_rejected(tmp_path, case):
    text, expected = INVALID_REFERENCES[case]
    with pytest.raises(AssignmentError, match=re.escape(expected)):
        build_assignment(write_reference(tmp_path, text))


def test_invalid_reference_is_usage_error(tmp_path, capsys):
    reference = write_reference(tmp_path, INVALID_REFERENCES["unclosed"][0])
    assert assign_command(reference, tmp_path / "lab.ipynb") == 2
    message = capsys.readouterr().err
    assert message.startswith("grade assign: error: ")
    assert f"{reference}, line 2" in message


def test_error_names_reference_line(tmp_path):
    reference = write_reference(tmp_path, '# %%\nimport os\n\n# %% tags=["part:model"]\n\ndef f():\n'
                                          "    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION\n")
    with pytest.raises(AssignmentError, match=r"reference\.py, line 7: BEGIN SOLUTION must be followed"):
        build_assignment(reference)


def test_markdown_region_in_prompt_cell(tmp_path):
    reference = write_reference(tmp_path, "# %% [markdown]\n# **Exercise 2.1**: Why?\n#\n# <!-- BEGIN SOLUTION -->\n"
                                          "# <!-- HINT: Say why. -->\n# **Answer 2.1:** Because it is so.\n"
                                          "# <!-- END SOLUTION -->\n")
    cell = build_assignment(reference).cells[-1]
    assert cell.source == "**Exercise 2.1**: Why?\n\n**Answer 2.1:** _Your answer here. Hint: Say why._"
    assert tags_of(cell) == ["part:exercises", "answer:2.1"]


# Grading: the reference, the untouched starter and a filled-in starter, graded in one run.

@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> tuple[dict, Path]:
    folder = tmp_path_factory.mktemp("assign-submissions")
    shutil.copy(REFERENCE, folder / "reference.py")
    shutil.copy(COMMITTED, folder / "starter.ipynb")
    student = fill_in(COMMITTED, folder / "student.ipynb")
    code, summary = grade_folder(folder, tmp_path_factory.mktemp("assign-out"), model="tiny-gpt2")
    assert code == 0
    return summary, student


def test_reference_scores_full_marks(graded):
    summary, _ = graded
    result = summary["submissions"]["reference"]
    for check_id, check in result["checks"].items():
        assert check["status"] == "passed", (check_id, check["message"])
    assert result["score"] == result["max_score"] == 100


def test_starter_scores_zero(graded):
    summary, _ = graded
    checks = summary["submissions"]["starter"]["checks"]
    assert set(checks) == set(CHECK_IDS)
    for check_id, check in checks.items():
        assert check["score"] == 0, (check_id, check["status"], check["message"])
    assert summary["submissions"]["starter"]["score"] == 0


def test_filled_starter_scores_full_marks(graded):
    summary, student = graded
    assert f"answer:{MOVED_ANSWER}" in tags_of(nbformat.read(student, as_version=4).cells[0])
    result = summary["submissions"]["student"]
    for check_id, check in result["checks"].items():
        assert check["status"] == "passed", (check_id, check["message"])
    assert result["score"] == result["max_score"] == 100


def test_moved_answer_found(graded):
    _, student = graded
    answers = find_answers(load_program(student))
    assert answers[MOVED_ANSWER].startswith("The model starts from its pretrained weights")
    assert answers[MOVED_ANSWER].endswith("here the response after the prompt.")
