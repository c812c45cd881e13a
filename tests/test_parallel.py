"""Speed-ups change no grade: --jobs, and --shard runs combined with `grade merge`."""

from __future__ import annotations

import shutil

import pytest

from harness.cli import main
from tests.conftest import EXAMPLES, grade_folder

NAMES = ("carol_no_training.ipynb", "frank_syntax_error.ipynb", "henry_cuda.ipynb")


def outputs(out):
    return [(out / name).read_text() for name in ("summary.json", "grades.csv", "index.html")]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("class")
    for name in NAMES:
        shutil.copy(EXAMPLES / name, path / name)
    return path


@pytest.fixture(scope="module")
def sequential(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("sequential")
    code, _ = grade_folder(folder, out, "--threads", "1", jobs=1)
    assert code == 0
    return out


def test_jobs_same_grades(folder, sequential, tmp_path):
    code, _ = grade_folder(folder, tmp_path / "out", "--threads", "1", jobs=2)
    assert code == 0
    assert outputs(tmp_path / "out") == outputs(sequential)


def test_shards_merge_to_single_run(folder, sequential, tmp_path):
    for index in (1, 2):
        code, summary = grade_folder(folder, tmp_path / f"shard{index}", "--threads", "1", "--shard", f"{index}/2",
                                     jobs=1)
        assert code == 0
        assert len(summary["submissions"]) == (2 if index == 1 else 1)
    assert main(["merge", str(tmp_path / "shard1"), str(tmp_path / "shard2"), "--out", str(tmp_path / "merged")]) == 0
    assert outputs(tmp_path / "merged") == outputs(sequential)
    for name in NAMES:
        assert (tmp_path / "merged" / name.removesuffix(".ipynb") / "report.html").is_file()


def test_merge_rejects_overlap(sequential, tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        main(["merge", str(sequential), str(sequential), "--out", str(tmp_path / "merged")])
    assert raised.value.code == 2
    assert "is in both" in capsys.readouterr().err


def test_bad_shard_is_usage_error(folder, capsys):
    with pytest.raises(SystemExit) as raised:
        main([str(folder), "--shard", "3/2"])
    assert raised.value.code == 2
    assert "must be I/N with 1 <= I <= N (for example 2/4), got 3/2" in capsys.readouterr().err
