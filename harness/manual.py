"""Scores entered by hand for the written exercises, merged into every output without grading again.

`grade` writes `manual_scores.csv` next to the class page: one row per submission, one column per exercise,
and a comment. An instructor fills in the points of each exercise (empty keeps the automatic credit for a
present answer) and runs `grade merge-manual OUT`, which rewrites every report, `results.json`, `summary.json`
and `grades.csv` from the graded results. A later `grade` run on the same folder applies the sheet again.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from harness.config import EXERCISES
from harness.records import SubmissionResult
from harness.report import writer

logger = logging.getLogger(__name__)

# Checks marked by hand, and the sheet's columns for each: one per part, sharing the check's points equally.
MARKED_BY_HAND = {"exercises.answered": EXERCISES, "project.discussion": ("discussion",)}


def marked_check(result: SubmissionResult) -> tuple[str, tuple[str, ...]] | None:
    """Return the check of `result` that is marked by hand and its sheet columns, or None."""
    for check_id, columns in MARKED_BY_HAND.items():
        if result.get_check(check_id):
            return check_id, columns
    return None


def sheet_columns(results: list[SubmissionResult]) -> tuple[str, ...]:
    found = {marked_check(result) for result in results} - {None}
    return next(iter(found))[1] if found else EXERCISES


class ManualScoresError(ValueError):
    """A manual scores sheet that cannot be applied; the message names the row, the column and the value."""


def read_sheet(path: Path, results: dict[str, SubmissionResult], strict: bool = True) -> dict[str, dict]:
    """Return {submission: {"scores": {exercise: points}, "comment": text}} for the rows that have entries.

    With `strict`, a row for a submission that is not in `results` is an error, because it is likely a misspelt
    id. Without it, such rows are skipped: a run may grade only some of the submissions the sheet lists.
    """
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
            columns = rows[0].keys() if rows else []
    except OSError as error:
        raise ManualScoresError(f"cannot read {path}: {error.strerror or error}") from None
    parts = sheet_columns(list(results.values()))
    missing = [name for name in ("submission", *parts) if rows and name not in columns]
    if missing:
        raise ManualScoresError(f"{path} has no column {', '.join(missing)}; keep the header the grader wrote: "
                                f"submission,{','.join(parts)},comment")
    entries: dict[str, dict] = {}
    for line, row in enumerate(rows, start=2):
        submission_id = (row.get("submission") or "").strip()
        if submission_id not in results and not strict:
            continue
        if submission_id not in results:
            raise ManualScoresError(f"{path} line {line}: submission {submission_id!r} is not in this output "
                                    f"folder; the graded submissions are: {', '.join(sorted(results)) or 'none'}")
        marked = marked_check(results[submission_id])
        if marked is None:
            continue
        limit = results[submission_id].check(marked[0]).max_score / len(parts)
        scores: dict[str, float] = {}
        for number in parts:
            text = (row.get(number) or "").strip()
            if not text:
                continue
            try:
                value = float(text)
            except ValueError:
                value = float("nan")
            if not 0 <= value <= limit:
                raise ManualScoresError(f"{path} line {line}, column {number}: {text!r} is not allowed; enter a "
                                        f"number from 0 to {limit:g} (the points of {number}), or leave it empty")
            scores[number] = value
        comment = (row.get("comment") or "").strip()
        if scores or comment:
            entries[submission_id] = {"scores": scores, "comment": comment}
    return entries


def apply(result: SubmissionResult, entry: dict | None) -> bool:
    """Set the hand-marked check's score from `entry` and return whether the result changed.

    The automatic score is kept in the check's details, so applying the same entry twice changes nothing.
    """
    marked = marked_check(result)
    if marked is None:
        return False
    check_id, parts = marked
    check = result.check(check_id)
    details = check.details
    share = check.max_score / len(parts)
    if "automatic_score" not in details:
        details["automatic_score"] = check.score
        details["automatic_message"] = check.message
    missing = set(details.get("missing", parts))
    automatic = {number: (0.0 if number in missing else share) for number in parts}
    entry = entry or {}
    scores = entry.get("scores", {})
    before = (check.score, check.message, result.manual)
    if scores:
        check.score = round(sum(scores.get(number, automatic[number]) for number in parts), 2)
        by_hand = ", ".join(f"{number}: {value:g}" for number, value in scores.items())
        check.message = f"{details['automatic_message']} Scored by hand ({by_hand}): {check.score:g} of {check.max_score:g}."
    else:
        check.score = details["automatic_score"]
        check.message = details["automatic_message"]
    result.manual = dict(entry)
    return before != (check.score, check.message, result.manual)


def apply_sheet(out: Path, results: list[SubmissionResult], strict: bool = True) -> list[SubmissionResult]:
    """Apply `out/manual_scores.csv`, if present, to `results`; return the results that changed."""
    path = out / writer.MANUAL_FILE
    if not path.is_file():
        return []
    entries = read_sheet(path, {result.submission_id: result for result in results}, strict)
    return [result for result in results if apply(result, entries.get(result.submission_id))]


def merge_manual(out: Path) -> int:
    """Apply the sheet in `out` to its graded results and rewrite every output; return the submissions changed."""
    summary_path = out / "summary.json"
    if not summary_path.is_file():
        raise ManualScoresError(f"{out} has no summary.json; pass the --out folder of a finished `grade` run")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    results = []
    for submission_id in summary["submissions"]:
        data = json.loads((out / submission_id / "result.json").read_text(encoding="utf-8"))
        results.append(SubmissionResult.from_dict(data))
    if not (out / writer.MANUAL_FILE).is_file():
        raise ManualScoresError(f"{out / writer.MANUAL_FILE} does not exist; run `grade` first, which writes it")
    changed = apply_sheet(out, results, strict=True)
    for result in changed:
        writer.write_submission(result, out)
    writer.write_class(results, summary["environment"], out)
    return len(changed)


def finish_batch(results: list[SubmissionResult], environment: dict, out: Path) -> None:
    """Apply the manual scores sheet to a finished batch, then write the class page, summary and sheets.

    A sheet that cannot be applied is logged and left out, so a typo in it never loses a graded batch.
    """
    try:
        for result in apply_sheet(out, results, strict=False):
            writer.write_submission(result, out)
    except ManualScoresError as error:
        logger.error("%s; the outputs leave the manual scores out until the sheet is fixed", error)
    writer.write_class(results, environment, out)
