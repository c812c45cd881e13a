"""Small pieces: discovery, redirection of model ids, hints, tokenizer strings."""

from __future__ import annotations

import pytest

from harness.checks.diagnose import hint_for
from harness.checks.tokenization import HARD_STRINGS, first_difference
from harness.discover import DiscoveryError, find_submissions
from harness.execute.shims import served_path


def test_discover_files_and_folders(tmp_path):
    (tmp_path / "ann.ipynb").write_text("{}")
    (tmp_path / "ann.py").write_text("")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "ben").mkdir()
    (tmp_path / "ben" / "lab.ipynb").write_text("{}")
    (tmp_path / "ben" / "helper.py").write_text("")
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "a.py").write_text("")
    (tmp_path / "cat" / "b.py").write_text("")
    submissions, warnings = find_submissions(tmp_path)
    assert [submission.id for submission in submissions] == ["ann.ipynb", "ann.py", "ben"]
    assert submissions[2].path.name == "lab.ipynb"
    assert len(warnings) == 1
    assert "cat" in warnings[0]
    assert "a.py, b.py" in warnings[0]


def test_discover_missing_path(tmp_path):
    with pytest.raises(DiscoveryError, match="does not exist"):
        find_submissions(tmp_path / "nowhere")


def test_served_path_redirects_hub_ids_only(tmp_path):
    assert served_path("microsoft/DialoGPT-medium", "/models/x") == ("/models/x", True)
    assert served_path("gpt2", "/models/x") == ("/models/x", True)
    assert served_path(str(tmp_path), "/models/x") == (str(tmp_path), False)
    assert served_path("./results/checkpoint-5", "/models/x") == ("./results/checkpoint-5", False)


def test_hints_for_known_mistakes():
    assert "datasets" in hint_for("ImportError", "cannot import name 'TextDataset' from 'transformers'")
    assert "overwrite_output_dir" in hint_for(
        "TypeError", "TrainingArguments.__init__() got an unexpected keyword argument 'overwrite_output_dir'")
    assert "torch.cuda.is_available()" in hint_for("AssertionError", "Torch not compiled with CUDA enabled")
    assert hint_for("ValueError", "something else") is None


def test_hard_strings_cover_the_required_cases():
    labels = {label for label, _ in HARD_STRINGS}
    texts = [text for _, text in HARD_STRINGS]
    assert len(HARD_STRINGS) >= 25
    assert "" in texts
    assert max(len(text) for text in texts) == 2000
    assert {"leading space", "trailing space", "tab", "newlines", "emoji", "Chinese", "Arabic (right to left)",
            "Python code", "punctuation run", "accents"} <= labels


def test_first_difference():
    assert first_difference("abc", "abd") == 2
    assert first_difference(" a", "a") == 0
    assert first_difference("abc", "ab") == 2
