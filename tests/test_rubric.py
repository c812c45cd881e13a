"""The rubric file: documented defaults, overrides key by key, invalid values named with what is allowed."""

from __future__ import annotations

import tomllib

import pytest

from harness.cli import main
from harness.config import RUBRIC_FILE, Limits, Rubric
from harness.rubric import RubricError, load_rubric
from tests.conftest import grade_folder


def test_default_file_is_the_defaults(tmp_path):
    rubric, limits = load_rubric(RUBRIC_FILE)
    assert rubric.to_dict() | {"source": ""} == Rubric().to_dict() | {"source": ""}
    assert limits == Limits()
    assert sum(policy.points for policy in rubric.checks.values()) == 100
    assert rubric.visibility("tokenization.hidden") == "hidden"


def test_partial_file_keeps_other_defaults(tmp_path):
    path = tmp_path / "rubric.toml"
    path.write_text('[finetune]\nmin_loss_drop = 0.5\n[checks."interface.gradio"]\nvisibility = "hidden"\n'
                    '[limits]\ncell_seconds = 30\n')
    rubric, limits = load_rubric(path)
    assert rubric.min_loss_drop == 0.5
    assert rubric.visibility("interface.gradio") == "hidden"
    assert rubric.points("interface.gradio") == 15
    assert rubric.prompt == Rubric().prompt
    assert limits.cell == 30
    assert limits.check == Limits().check
    assert rubric.source.startswith("rubric.toml (sha256 ")


@pytest.mark.parametrize("text, message", [
    ("[finetune]\nmin_loss_drop = 1.5\n",
     "[finetune] min_loss_drop = 1.5 is not allowed; it must be a number, more than 0 and at most 1"),
    ("[chatbot]\nmax_new_tokens = 0\n",
     "[chatbot] max_new_tokens = 0 is not allowed; it must be a whole number from 1 to 1024"),
    ('[checks."model.load"]\nvisibility = "secret"\n',
     '[checks."model.load"] visibility = \'secret\' is not allowed; it must be "public" or "hidden"'),
    ('[checks."model.loaded"]\npoints = 3\n', "unknown check [checks.'model.loaded']; allowed: model.load"),
    ("[pair]\nprompt = \"\"\n", "[pair] prompt = '' is not allowed; it must be a non-empty string"),
    ("[finetune]\nmin_loss_dorp = 0.3\n", "unknown key 'min_loss_dorp' in [finetune]; allowed: min_loss_drop"),
    ("[grading]\nx = 1\n", "unknown table [grading]; allowed: [pair]"),
    ("[pair\n", "is not valid TOML"),
])
def test_invalid_values_are_named(tmp_path, text, message):
    path = tmp_path / "rubric.toml"
    path.write_text(text)
    with pytest.raises(RubricError) as raised:
        load_rubric(path)
    assert message in str(raised.value)
    assert str(path) in str(raised.value)


def test_cli_rejects_bad_rubric(tmp_path, capsys):
    path = tmp_path / "rubric.toml"
    path.write_text("[limits]\nmemory_gib = -1\n")
    with pytest.raises(SystemExit) as raised:
        main([str(tmp_path), "--rubric", str(path)])
    assert raised.value.code == 2
    assert "[limits] memory_gib = -1 is not allowed" in capsys.readouterr().err


def test_reports_state_the_rubric(three_folder, tmp_path):
    path = tmp_path / "strict.toml"
    path.write_text('[checks."model.load"]\npoints = 20\nvisibility = "hidden"\n')
    code, summary = grade_folder(three_folder, tmp_path / "out", "--rubric", str(path))
    assert code == 0
    rubric = summary["environment"]["rubric"]
    assert rubric["source"].startswith("strict.toml (sha256 ")
    assert rubric["checks"]["model.load"] == {"points": 20, "visibility": "hidden"}
    carol = summary["submissions"]["carol_no_training"]
    assert carol["max_score"] == 110
    assert carol["checks"]["model.load"]["visibility"] == "hidden"
    assert "strict.toml (sha256 " in (tmp_path / "out" / "carol_no_training" / "report.html").read_text()
    assert "strict.toml (sha256 " in (tmp_path / "out" / "index.html").read_text()
    assert tomllib.loads(RUBRIC_FILE.read_text())["checks"]["model.load"]["points"] == 10
