"""Write the per-submission reports and exports, and the class page, summary and grade sheet.

Each submission folder contains two views of one result: `report.html` for the instructor, with everything, and
`student.html` for the student, rendered from a copy whose hidden checks keep only their title, status and
points. `results.json` (Gradescope) is built from that same copy, so hidden inputs never reach a student.
"""

from __future__ import annotations

import copy
import csv
import difflib
import io
import json
import os
import re
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from harness.config import EXERCISES
from harness.records import CHECK_IDS, CHECK_TITLES, PROJECT_CHECK_IDS, SubmissionResult
from harness.report import plots

TEMPLATES = Path(__file__).resolve().parent / "templates"
SUBMISSION_FILES = ("report.html", "student.html", "results.json", "result.json")
MANUAL_FILE = "manual_scores.csv"
# Gradescope shows a test with this visibility once the due date has passed; hidden checks use it.
GRADESCOPE_HIDDEN = "after_due_date"


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
    env.filters["marked"] = marked_difference
    env.globals.update(word_diff=word_diff, expectation=expectation, loss_plot=loss_plot, project_plot=project_plot,
                       metric_titles=METRIC_TITLES)
    return env


def visible_text(text: str | None) -> str:
    """Show whitespace and invisible characters in a string so that differences can be seen."""
    if text is None:
        return "(none)"
    return repr(text)[1:-1] if text else "(empty)"


def marked_difference(text: str | None, position: int | None) -> Markup:
    """`text` shown with `visible_text`, the character at `position` wrapped in <mark>."""
    if text is None:
        return Markup('<span class="muted">(none)</span>')
    if position is None:
        return escape(visible_text(text))
    head, rest = text[:position], text[position:]
    shown_head = repr(head)[1:-1]
    if not rest:
        return Markup(f'{escape(shown_head)}<mark title="the string ends here">(end)</mark>')
    return Markup(f"{escape(shown_head)}<mark>{escape(repr(rest[0])[1:-1])}</mark>{escape(repr(rest[1:])[1:-1])}")


def word_diff(before: str | None, after: str | None) -> tuple[Markup, Markup]:
    """Both replies with the words that differ marked: removed ones in `before`, added ones in `after`."""
    old, new = re.split(r"(\s+)", before or ""), re.split(r"(\s+)", after or "")
    left: list[str] = []
    right: list[str] = []
    for operation, old_start, old_end, new_start, new_end in difflib.SequenceMatcher(a=old, b=new,
                                                                                    autojunk=False).get_opcodes():
        removed, added = "".join(old[old_start:old_end]), "".join(new[new_start:new_end])
        if operation == "equal":
            left.append(str(escape(removed)))
            right.append(str(escape(added)))
            continue
        if removed.strip():
            left.append(f"<del>{escape(removed)}</del>")
        else:
            left.append(str(escape(removed)))
        if added.strip():
            right.append(f"<ins>{escape(added)}</ins>")
        else:
            right.append(str(escape(added)))
    return Markup("".join(left)), Markup("".join(right))


def expectation(check_id: str, rubric: dict) -> str:
    """Describe what passing a check requires, in the rubric's own numbers."""
    pair = rubric.get("pair", {})
    project = rubric.get("project", {})
    return {
        "model.load": "A causal language model and its tokenizer, loaded as `model` and `tokenizer`.",
        "tokenization.round_trip": "Decoding the encoded text gives back every public test string exactly.",
        "tokenization.hidden": "The same round trip on strings that only the instructor sees.",
        "finetune.loss_decreases": (f"The grader's loss of {pair.get('prompt', '')!r} + {pair.get('response', '')!r} "
                                    f"falls by at least {100 * rubric.get('finetune', {}).get('min_loss_drop', 0):.0f}%."),
        "chatbot.before_after": (f"chrF of the reply to the trained prompt rises by at least "
                                 f"{rubric.get('chatbot', {}).get('min_chrf_gain', 0):g} after fine-tuning."),
        "interface.gradio": "`iface` is a Gradio interface that answers a prompt with the chatbot's reply.",
        "exercises.answered": (f"Each of the {len(EXERCISES)} written exercises has an answer of at least "
                               f"{rubric.get('exercises', {}).get('min_answer_words', 0)} words."),
        "project.chat": "`chat_reply` answers every held-out context, using the model it is given.",
        "project.improvement": (f"Perplexity on the held-out dialogues falls by at least "
                                f"{100 * project.get('min_perplexity_drop', 0):.0f}%."),
        "project.forgetting": (f"Perplexity on the general text rises by at most "
                               f"{100 * project.get('max_forgetting', 0):.0f}%."),
        "project.discussion": (f"A discussion of at least {project.get('discussion_min_words', 0)} words, "
                               "marked by hand."),
    }.get(check_id, "")


def loss_plot(details: dict) -> Markup | None:
    curve = details.get("curve") or []
    if len(curve) < 2:
        return None
    before = details["loss_before"]
    required = before * (1 - details["required_drop"])
    return plots.line_plot(
        [(step, loss) for step, loss in curve],
        title="Loss of the trained pair over the optimizer steps",
        description=(f"Measured by the grader after each of {len(curve) - 1} optimizer steps: from {before:g} "
                     f"before training to {curve[-1][1]:g} after step {curve[-1][0]:g}. The rubric needs "
                     f"{required:.3f} or lower after training."),
        x_label="optimizer step", y_label="loss (nats per token)", limit=required,
        limit_label=f"needed: {required:.3f}",
    )


METRIC_TITLES = {"chrf": "chrF", "bleu": "BLEU", "rouge": "ROUGE-L"}


def project_plot(project: dict) -> Markup | None:
    """Bars of the graded model's reply overlap metrics, before and after fine-tuning."""
    row = project["models"].get(project["primary"], {})
    if not row.get("metrics_before") or not row.get("metrics_after"):
        return None
    items = []
    for name, title in METRIC_TITLES.items():
        items += [(f"{title} before", row["metrics_before"][name]), (f"{title} after", row["metrics_after"][name])]
    return plots.bars(items, title=f"Reply overlap before and after fine-tuning ({project['primary']})", unit="")


def project_summary(results: list[SubmissionResult]) -> list[dict]:
    """Per model, the mean of each measurement over the submissions that have it, for the class page."""
    models: dict[str, dict[str, list[float]]] = {}
    for result in results:
        for model_name, row in (result.project or {}).get("models", {}).items():
            values = models.setdefault(model_name, defaultdict(list))
            for phase in ("before", "after"):
                perplexity = row.get(f"perplexity_{phase}") or {}
                for key in ("held_out", "general"):
                    if key in perplexity:
                        values[f"{key}_{phase}"].append(perplexity[key])
                for name, value in (row.get(f"metrics_{phase}") or {}).items():
                    values[f"{name}_{phase}"].append(value)
    return [{"model": name, "count": len(values.get("held_out_before", [])),
             **{key: round(sum(numbers) / len(numbers), 2) for key, numbers in values.items() if numbers}}
            for name, values in models.items()]


def atomic_write(path: Path, text: str) -> None:
    """Write through a temporary file and rename, so a killed grader never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
        file.write(text)
    os.replace(temporary, path)


def student_copy(result: SubmissionResult) -> SubmissionResult:
    """Return a copy of `result` in which each hidden check keeps only its title, status and points."""
    shown = copy.deepcopy(result)
    for check in shown.checks:
        if check.visibility == "hidden":
            check.message = f"Hidden check, {check.status}: its inputs and expected values are not shown."
            check.details = {}
    return shown


def gradescope_results(result: SubmissionResult) -> dict[str, Any]:
    """Return the student's copy of the result in Gradescope's `results.json` schema.

    Statuses there are only passed/failed. Hidden checks keep their name and outcome and become visible after
    the due date.
    """
    shown = student_copy(result)
    tests = []
    for check in shown.checks:
        entry = {
            "name": f"{check.title} ({check.id})",
            "score": check.score,
            "max_score": check.max_score,
            "status": "passed" if check.status == "passed" else "failed",
            "output": f"[{check.status}] {check.message}",
            "tags": [check.id],
        }
        if check.visibility == "hidden":
            entry["visibility"] = GRADESCOPE_HIDDEN
        tests.append(entry)
    return {
        "score": shown.score,
        "execution_time": round(shown.seconds),
        "output": shown.problem or f"Graded with {shown.environment.get('model', {}).get('name', 'unknown model')}.",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }


def write_submission(result: SubmissionResult, out: Path) -> None:
    folder = out / result.submission_id
    template = environment().get_template("report.html.j2")
    atomic_write(folder / "report.html", template.render(result=result, titles=CHECK_TITLES, view="instructor"))
    atomic_write(folder / "student.html", template.render(result=student_copy(result), titles=CHECK_TITLES,
                                                          view="student"))
    atomic_write(folder / "results.json", json.dumps(gradescope_results(result), indent=2, ensure_ascii=False))
    atomic_write(folder / "result.json", json.dumps(result.to_dict(), indent=2, ensure_ascii=False, default=str))


def overall_status(result: SubmissionResult) -> str:
    if any(check.details.get("internal") for check in result.checks):
        return "grader error"
    return "incomplete" if result.problem else "graded"


def summary(results: list[SubmissionResult], environment_info: dict) -> dict[str, Any]:
    return {
        "environment": environment_info,
        "submissions": {
            result.submission_id: {
                "score": result.score,
                "max_score": result.max_score,
                "status": overall_status(result),
                "problem": result.problem,
                "manual": result.manual,
                "checks": {
                    check.id: {"status": check.status, "score": check.score, "max_score": check.max_score,
                               "visibility": check.visibility, "message": check.message}
                    for check in result.checks
                },
            }
            for result in results
        },
    }


def _csv(rows: list[list[Any]]) -> str:
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def check_ids_of(results: list[SubmissionResult]) -> list[str]:
    """Return the checks that ran on any of `results`, in the usual order (a self-check runs only the public ones)."""
    present = {check.id for result in results for check in result.checks}
    return [check_id for check_id in (*CHECK_IDS, *PROJECT_CHECK_IDS) if check_id in present]


def grades_csv(results: list[SubmissionResult]) -> str:
    check_ids = check_ids_of(results)
    header = ["submission", "status", *[f"{check_id} ({kind})" for check_id in check_ids for kind in ("status", "score")],
              "total", "max_score", "percent", "manual comment"]
    rows: list[list[Any]] = [header]
    for result in results:
        row: list[Any] = [result.submission_id, overall_status(result)]
        for check_id in check_ids:
            check = result.get_check(check_id)
            row += [check.status, f"{check.score:g}"] if check else ["not run", ""]
        row += [f"{result.score:g}", f"{result.max_score:g}", f"{result.percent:g}",
                (result.manual or {}).get("comment", "")]
        rows.append(row)
    return _csv(rows)


def class_analytics(results: list[SubmissionResult]) -> dict[str, Any]:
    """Figures for the class page: score histogram, pass rate per check, common failures, time spent."""
    count = len(results) or 1
    pass_rates = []
    for check_id in check_ids_of(results):
        passed = sum(1 for result in results if (check := result.get_check(check_id)) and check.status == "passed")
        pass_rates.append({"id": check_id, "title": CHECK_TITLES[check_id], "passed": passed,
                           "percent": round(100 * passed / count, 1)})
    failures: dict[tuple[str, str], list[str]] = defaultdict(list)
    examples: dict[tuple[str, str], str] = {}
    for result in results:
        for check in result.checks:
            if check.status != "passed":
                key = (check.id, _failure_kind(check.message))
                failures[key].append(result.submission_id)
                examples.setdefault(key, check.message)
        for cell in result.cells:
            if cell.hint:
                key = ("hint", cell.hint)
                if result.submission_id not in failures[key]:
                    failures[key].append(result.submission_id)
                examples.setdefault(key, cell.hint)
    common = sorted(({"check": check_id, "message": examples[(check_id, kind)], "submissions": ids}
                     for (check_id, kind), ids in failures.items()),
                    key=lambda entry: (-len(entry["submissions"]), entry["check"], entry["message"]))
    return {
        "histogram": plots.histogram([result.percent for result in results], edges=list(range(0, 101, 10)),
                                     title="Distribution of scores (percent)", x_label="score (%)",
                                     y_label="submissions"),
        "pass_rates": pass_rates,
        "pass_plot": plots.bars([(entry["id"], entry["percent"]) for entry in pass_rates],
                                title="Share of submissions that passed each check"),
        "common": common[:12],
        "total_seconds": round(sum(result.seconds for result in results), 1),
        "mean_score": round(sum(result.percent for result in results) / count, 1),
    }


def _failure_kind(message: str) -> str:
    """Return the first sentence of a message with quoted text and numbers blanked, so similar failures group."""
    first = re.split(r"(?<=[.:;])\s", message, maxsplit=1)[0]
    first = re.sub(r"'[^']*'|\"[^\"]*\"|`[^`]*`", "'…'", first)
    return re.sub(r"\d+(\.\d+)?", "#", first)


def write_class(results: list[SubmissionResult], environment_info: dict, out: Path) -> None:
    ordered = sorted(results, key=lambda result: result.submission_id)
    page = environment().get_template("index.html.j2").render(
        results=ordered, check_ids=check_ids_of(ordered), titles=CHECK_TITLES, environment=environment_info,
        analytics=class_analytics(ordered), status_of=overall_status, project=project_summary(ordered),
    )
    atomic_write(out / "index.html", page)
    atomic_write(out / "summary.json", json.dumps(summary(ordered, environment_info), indent=2, ensure_ascii=False))
    atomic_write(out / "grades.csv", grades_csv(ordered))
    sheet = manual_template(ordered, out / MANUAL_FILE)
    if sheet is not None:
        atomic_write(out / MANUAL_FILE, sheet)


def manual_template(results: list[SubmissionResult], existing: Path | None = None) -> str | None:
    """Build the sheet an instructor fills in: one row per submission, one column per written exercise.

    Rows already in `existing` are kept as they are, entries included; submissions it lacks get empty rows.
    Returns None when `existing` has other columns (another kind of assignment), so nothing entered is lost.
    """
    from harness.manual import sheet_columns

    parts = sheet_columns(results)
    header = ["submission", *parts, "comment"]
    rows: list[list[Any]] = []
    if existing is not None and existing.is_file():
        with existing.open(newline="", encoding="utf-8") as handle:
            kept = list(csv.reader(handle))
        if kept and kept[0] != header:
            return None
        rows = kept[1:]
    listed = {row[0] for row in rows if row}
    rows += [[result.submission_id, *[""] * len(parts), ""] for result in results if result.submission_id not in listed]
    return _csv([header, *rows])
