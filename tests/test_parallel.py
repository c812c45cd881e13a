"""Speed-ups change no grade: --jobs, and --shard runs combined with `grade merge`."""

from __future__ import annotations

import re

import pytest

from harness.cli import main
from tests.conftest import THREE, grade_folder

# Elements of the class page that show wall-clock times, which differ between any two runs.
TIMING = re.compile(r'<(td|span) class="[^"]*\btiming\b[^"]*"[^>]*>.*?</\1>', re.S)


def outputs(out):
    """The class outputs, with the class page's timings blanked."""
    summary, grades, index = ((out / name).read_text() for name in ("summary.json", "grades.csv", "index.html"))
    assert TIMING.search(index)
    return [summary, grades, TIMING.sub("", index)]


def test_jobs_same_grades(three_folder, three_graded, tmp_path):
    code, _ = grade_folder(three_folder, tmp_path / "out", "--threads", "1", jobs=2)
    assert code == 0
    assert outputs(tmp_path / "out") == outputs(three_graded)


def test_shards_merge_to_single_run(three_folder, three_graded, tmp_path):
    for index in (1, 2):
        code, summary = grade_folder(three_folder, tmp_path / f"shard{index}", "--threads", "1", "--shard", f"{index}/2",
                                     jobs=1)
        assert code == 0
        assert len(summary["submissions"]) == (2 if index == 1 else 1)
    assert main(["merge", str(tmp_path / "shard1"), str(tmp_path / "shard2"), "--out", str(tmp_path / "merged")]) == 0
    assert outputs(tmp_path / "merged") == outputs(three_graded)
    for name in THREE:
        assert (tmp_path / "merged" / name.removesuffix(".ipynb") / "report.html").is_file()


def test_merge_rejects_overlap(three_graded, tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        main(["merge", str(three_graded), str(three_graded), "--out", str(tmp_path / "merged")])
    assert raised.value.code == 2
    assert "is in both" in capsys.readouterr().err


def test_bad_shard_is_usage_error(three_folder, capsys):
    with pytest.raises(SystemExit) as raised:
        main([str(three_folder), "--shard", "3/2"])
    assert raised.value.code == 2
    assert "must be I/N with 1 <= I <= N (for example 2/4), got 3/2" in capsys.readouterr().err
