"""Write the per-submission report and exports, and the class page, summary and grade sheet."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jinja2

from harness.records import CHECK_IDS, CHECK_TITLES, SubmissionResult

TEMPLATES = Path(__file__).resolve().parent / "templates"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["points"] = lambda value: f"{value:g}" if float(value).is_integer() else f"{value:.2f}"
    env.filters["visible"] = visible_text
    return env


def visible_text(text: str | None) -> str:
    """Show whitespace and invisible characters in a string so that differences can be seen."""
    if text is None:
        return "(none)"
    return repr(text)[1:-1] if text else "(empty)"


def atomic_write(path: Path, text: str) -> None:
    """Write through a temporary file and rename, so a killed grader never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
        file.write(text)
    os.replace(temporary, path)


def gradescope_results(result: SubmissionResult) -> dict[str, Any]:
    """Return the submission in Gradescope's `results.json` schema (statuses there are only passed/failed)."""
    tests = []
    for check in result.checks:
        tests.append({
            "name": f"{check.title} ({check.id})",
            "score": check.score,
            "max_score": check.max_score,
            "status": "passed" if check.status == "passed" else "failed",
            "output": f"[{check.status}] {check.message}",
            "tags": [check.id],
        })
    return {
        "score": result.score,
        "execution_time": round(result.seconds),
        "output": result.problem or f"Graded with {result.environment.get('model', {}).get('name', 'unknown model')}.",
        "tests": tests,
    }


def write_submission(result: SubmissionResult, out: Path) -> None:
    folder = out / result.submission_id
    page = environment().get_template("report.html.j2").render(result=result, titles=CHECK_TITLES)
    atomic_write(folder / "report.html", page)
    atomic_write(folder / "results.json", json.dumps(gradescope_results(result), indent=2, ensure_ascii=False))
    atomic_write(folder / "result.json", json.dumps(result.to_dict(), indent=2, ensure_ascii=False, default=str))


def summary(results: list[SubmissionResult], environment_info: dict) -> dict[str, Any]:
    return {
        "environment": environment_info,
        "submissions": {
            result.submission_id: {
                "score": result.score,
                "max_score": result.max_score,
                "problem": result.problem,
                "checks": {
                    check.id: {"status": check.status, "score": check.score, "max_score": check.max_score,
                               "message": check.message}
                    for check in result.checks
                },
            }
            for result in results
        },
    }


def grades_csv(results: list[SubmissionResult]) -> str:
    rows = []
    header = ["submission", *[f"{check_id} ({kind})" for check_id in CHECK_IDS for kind in ("status", "score")],
              "total", "max_score", "percent"]
    for result in results:
        row = [result.submission_id]
        for check_id in CHECK_IDS:
            check = result.check(check_id)
            row += [check.status, f"{check.score:g}"]
        row += [f"{result.score:g}", f"{result.max_score:g}", f"{result.percent:g}"]
        rows.append(row)
    lines: list[str] = []

    class Sink:
        def write(self, text: str) -> None:
            lines.append(text)

    writer = csv.writer(Sink())
    writer.writerow(header)
    writer.writerows(rows)
    return "".join(lines)


def write_class(results: list[SubmissionResult], environment_info: dict, out: Path) -> None:
    ordered = sorted(results, key=lambda result: result.submission_id)
    page = environment().get_template("index.html.j2").render(
        results=ordered, check_ids=CHECK_IDS, titles=CHECK_TITLES, environment=environment_info
    )
    atomic_write(out / "index.html", page)
    atomic_write(out / "summary.json", json.dumps(summary(ordered, environment_info), indent=2, ensure_ascii=False))
    atomic_write(out / "grades.csv", grades_csv(ordered))
