"""exercises.answered: find the written answers to the lab's exercises; graded for presence, shown for manual marking.

An answer is the text after an `Answer N.M` marker (markdown heading, bold text or a `# Answer N.M:` comment in
code), or else the text after the question that follows an `Exercise N.M` marker. It ends at the next marker
at the next code cell, or at the next markdown heading.
"""

from __future__ import annotations

import re

from harness.checks.common import CheckContext
from harness.config import EXERCISES
from harness.records import CheckResult
from harness.source import Program

CHECK_ID = "exercises.answered"
BREAK = "\n\x00\n"
MARKER = re.compile(r"^[\s#>*_\-]*(?P<kind>answer|exercise)\s*(?P<number>\d+\.\d+)\b[\s*_:.)\-]*", re.I | re.M)
PLACEHOLDER = re.compile(r"your answer|answer here|write (it|here)|^todo\b|^tbd\b|^\W*$", re.I)
COMMENT = re.compile(r"^\s*# ?(.*)$")
# A markdown heading starts the next section, so it ends an answer.
HEADING = re.compile(r"^\s{0,3}#{1,6}\s", re.M)


def text_stream(program: Program) -> str:
    """Join the markdown cells and the marked comment blocks of code cells; code cells become breaks."""
    parts: list[str] = []
    for cell in program.cells:
        if cell.kind == "markdown":
            parts.append(cell.source)
            continue
        comments = [match.group(1) for line in cell.source.splitlines() if (match := COMMENT.match(line))]
        block = "\n".join(comments)
        parts.append(BREAK)
        if MARKER.search(block):
            parts.append(block)
            parts.append(BREAK)
    return "\n".join(parts)


def clean(text: str) -> str:
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    text = text.replace("\x00", " ")
    text = re.sub(r"[*_`]+", "", text)
    return re.sub(r"[ \t]+", " ", text).strip()


def split_question(text: str) -> str:
    """Drop the question (up to its first '?' or blank line) from the text that follows an exercise marker."""
    question_end = re.search(r"\?(\s|$)|\n\s*\n", text)
    return text[question_end.end():] if question_end else ""


def find_answers(program: Program) -> dict[str, str | None]:
    stream = text_stream(program)
    markers = list(MARKER.finditer(stream))
    found: dict[str, dict[str, str]] = {}
    for position, marker in enumerate(markers):
        end = markers[position + 1].start() if position + 1 < len(markers) else len(stream)
        segment = stream[marker.end():end].split(BREAK.strip("\n"), 1)[0]
        segment = HEADING.split(segment, 1)[0]
        kind = marker.group("kind").lower()
        if kind == "exercise":
            segment = split_question(segment)
        text = clean(segment)
        if text and not PLACEHOLDER.search(text):
            found.setdefault(marker.group("number"), {}).setdefault(kind, text)
    return {number: (found.get(number, {}).get("answer") or found.get(number, {}).get("exercise"))
            for number in EXERCISES}


def grade(context: CheckContext) -> CheckResult:
    rubric = context.config.rubric
    points = rubric.points(CHECK_ID)
    answers = find_answers(context.program)
    present = {number: text for number, text in answers.items()
               if text and len(text.split()) >= rubric.min_answer_words}
    missing = [number for number in EXERCISES if number not in present]
    details = {"answers": answers, "missing": missing}
    score = round(points * len(present) / len(EXERCISES), 2)
    if not missing:
        return CheckResult(CHECK_ID, "passed", score, points,
                           f"All {len(EXERCISES)} written answers were found; they are marked by hand.", details)
    return CheckResult(CHECK_ID, "failed", score, points,
                       f"No answer found for exercise {', '.join(missing)}. Write each answer in a markdown cell "
                       "that starts with **Answer N.M:** right after the exercise.", details)
