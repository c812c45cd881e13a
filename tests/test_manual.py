"""Hand-entered exercise scores are merged into every output by `grade merge-manual`, without grading again."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from harness.cli import main
from tests.conftest import grade_folder

SHEET = "manual_scores.csv"


def fill(out, rows: dict[str, dict[str, str]]) -> None:
    with open(out / SHEET, newline="") as handle:
        table = list(csv.DictReader(handle))
        header = list(table[0])
    for row in table:
        row.update(rows.get(row["submission"], {}))
    with open(out / SHEET, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(table)


@pytest.fixture
def graded_copy(three_graded, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(three_graded, out)
    return out


def test_sheet_written_with_every_submission(graded_copy):
    with open(graded_copy / SHEET, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["submission"] for row in rows] == ["carol_no_training", "frank_syntax_error", "henry_cuda"]
    assert list(rows[0]) == ["submission", "1.1", "2.1", "3.1", "4.1", "5.1", "6.1", "comment"]


def test_merge_manual_updates_every_output(graded_copy, capsys):
    before = json.loads((graded_copy / "summary.json").read_text())
    untouched = (graded_copy / "henry_cuda" / "report.html").read_text()
    fill(graded_copy, {"carol_no_training": {"1.1": "0", "2.1": "1.5", "comment": "Answer 1.1 misses the point."}})
    assert main(["merge-manual", str(graded_copy)]) == 0
    assert "Manual scores applied to 1 submissions" in capsys.readouterr().out

    after = json.loads((graded_copy / "summary.json").read_text())
    carol = after["submissions"]["carol_no_training"]
    exercises = carol["checks"]["exercises.answered"]
    share = exercises["max_score"] / 6
    assert exercises["score"] == pytest.approx(1.5 + 4 * share, abs=0.01)
    assert carol["score"] == pytest.approx(before["submissions"]["carol_no_training"]["score"] - share - share + 1.5,
                                           abs=0.01)
    assert carol["manual"]["comment"] == "Answer 1.1 misses the point."
    assert after["submissions"]["henry_cuda"] == before["submissions"]["henry_cuda"]

    with open(graded_copy / "grades.csv", newline="") as handle:
        row = next(row for row in csv.DictReader(handle) if row["submission"] == "carol_no_training")
    assert float(row["total"]) == pytest.approx(carol["score"], abs=0.01)
    assert row["manual comment"] == "Answer 1.1 misses the point."
    results = json.loads((graded_copy / "carol_no_training" / "results.json").read_text())
    assert results["score"] == pytest.approx(carol["score"], abs=0.01)
    for view in ("report.html", "student.html"):
        assert "Scored by hand" in (graded_copy / "carol_no_training" / view).read_text()
    assert (graded_copy / "henry_cuda" / "report.html").read_text() == untouched

    # Applying the same sheet again changes nothing; emptying it restores the automatic scores.
    assert main(["merge-manual", str(graded_copy)]) == 0
    assert json.loads((graded_copy / "summary.json").read_text()) == after
    fill(graded_copy, {"carol_no_training": {"1.1": "", "2.1": "", "comment": ""}})
    assert main(["merge-manual", str(graded_copy)]) == 0
    assert json.loads((graded_copy / "summary.json").read_text()) == before


@pytest.mark.parametrize("entry, expected", [
    ({"3.1": "7"}, "line 2, column 3.1: '7' is not allowed; enter a number from 0 to 2.5"),
    ({"3.1": "good"}, "line 2, column 3.1: 'good' is not allowed"),
])
def test_bad_value_names_it_and_changes_nothing(graded_copy, capsys, entry, expected):
    before = {path.name: path.read_bytes() for path in graded_copy.rglob("*") if path.is_file()}
    fill(graded_copy, {"carol_no_training": entry})
    with pytest.raises(SystemExit) as raised:
        main(["merge-manual", str(graded_copy)])
    assert raised.value.code == 2
    assert expected in capsys.readouterr().err
    after = {path.name: path.read_bytes() for path in graded_copy.rglob("*") if path.is_file() and path.name != SHEET}
    assert after == {name: data for name, data in before.items() if name != SHEET}


def test_unknown_submission_is_named(graded_copy, capsys):
    with open(graded_copy / SHEET, "a", newline="") as handle:
        handle.write("zoe_missing,1,,,,,,\n")
    with pytest.raises(SystemExit):
        main(["merge-manual", str(graded_copy)])
    assert "submission 'zoe_missing' is not in this output folder" in capsys.readouterr().err


def test_grade_run_keeps_the_sheet(three_folder, graded_copy):
    fill(graded_copy, {"carol_no_training": {"1.1": "1", "comment": "kept"}})
    with open(graded_copy / SHEET, "a", newline="") as handle:
        handle.write("zoe_other_batch,2,,,,,,from another run\n")
    code, summary = grade_folder(three_folder, graded_copy, "--threads", "1", jobs=1)
    assert code == 0
    assert summary["submissions"]["carol_no_training"]["manual"]["comment"] == "kept"
    with open(graded_copy / SHEET, newline="") as handle:
        rows = {row["submission"]: row for row in csv.DictReader(handle)}
    assert rows["carol_no_training"]["1.1"] == "1"
    assert rows["zoe_other_batch"]["comment"] == "from another run"
