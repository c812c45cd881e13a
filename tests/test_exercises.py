"""Extraction of the written exercise answers."""

from __future__ import annotations

from harness.checks.exercises import find_answers
from harness.source import load_program
from tests.conftest import EXAMPLES, REFERENCE, write_notebook


def test_reference_answers_all_found():
    answers = find_answers(load_program(REFERENCE))
    assert all(answers.values()), answers
    assert answers["4.1"].startswith("The model starts from its pretrained weights")


def test_answer_under_question_without_marker():
    answers = find_answers(load_program(EXAMPLES / "bob_textdataset.ipynb"))
    assert answers["1.1"].startswith("GPT-2, DistilGPT2")
    assert answers["5.1"] is None
    assert answers["6.1"] is None


def test_placeholder_and_heading_not_answers(tmp_path):
    path = write_notebook(tmp_path / "n.ipynb", [
        ("markdown", "**Exercise 1.1**: Which models?\n\n**Answer 1.1:** _Your answer here_"),
        ("markdown", "**Exercise 2.1**: What else?"),
        ("markdown", "## Part 3"),
        ("code", "# Answer 3.1: spaces, accents and unknown words are hard\nx = 1"),
        ("markdown", "### Answer 4.1\nGradients move the weights towards lower loss."),
    ])
    answers = find_answers(load_program(path))
    assert answers["1.1"] is None
    assert answers["2.1"] is None
    assert answers["3.1"] == "spaces, accents and unknown words are hard"
    assert answers["4.1"] == "Gradients move the weights towards lower loss."
