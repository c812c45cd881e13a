"""The HTML reports in headless Chromium: local-only pages, sorting, hidden checks, plots, print.

Four examples are graded once with tiny-gpt2 (about 30 s on 2 cores). Each test opens the pages it needs as
`file:` URLs. Screenshots go to tests/artifacts/screenshots/. Set LAB_GRADER_SKIP_BROWSER=1 to skip the module.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import nbformat
import pytest

from harness.config import Rubric
from harness.report.writer import visible_text
from tests.browser import (
    PHONE_VIEWPORT,
    BrowserSession,
    browser_session,
    print_to_pdf,
    screenshot,
    skip_requested,
)
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.skipif(skip_requested(), reason="LAB_GRADER_SKIP_BROWSER=1")

ALICE = "alice_correct"
CAROL = "carol_no_training"
DAVE = "dave_lossy_tokenizer"
FRANK = "frank_syntax_error"
SUBMISSIONS = (ALICE, CAROL, DAVE, FRANK)
INSTRUCTOR = "report.html"
STUDENT = "student.html"
CLASS_PAGE = "index.html"
PAGES = (CLASS_PAGE, *(f"{submission}/{view}" for submission in SUBMISSIONS for view in (INSTRUCTOR, STUDENT)))
PRINTED_PAGES = (CLASS_PAGE, f"{ALICE}/{INSTRUCTOR}", f"{ALICE}/{STUDENT}")

# A hidden string shorter than this (spaces not counted) would match ordinary page text by chance.
# NOTE: such strings (the empty string, a single space) are therefore not searched for at all.
MIN_NEEDLE = 4
# A report may cut a long string short, so its first characters are searched as well.
PREFIX = 40


class GradedSite:
    """The reports of one grading run, opened in the shared browser."""

    def __init__(self, session: BrowserSession, out: Path | None) -> None:
        self.session = session
        self.out = out

    def path(self, relative: str) -> Path:
        self.session.require()
        assert self.out is not None
        path = self.out / relative
        assert path.is_file(), f"`grade` wrote no {relative} (files in {path.parent}: {listing(path.parent)})"
        return path

    def open(self, relative: str, *, viewport: dict | None = None):
        return self.session.open(self.path(relative), viewport=viewport)

    def json(self, relative: str) -> Any:
        return json.loads(self.path(relative).read_text(encoding="utf-8"))

    def source(self, relative: str) -> str:
        return self.path(relative).read_text(encoding="utf-8")


def listing(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserSession]:
    with browser_session() as session:
        yield session


@pytest.fixture(scope="module")
def site(browser: BrowserSession, examples_graded) -> GradedSite:
    """The reports of every bundled example, graded once for the whole test session."""
    if browser.problem:
        return GradedSite(browser, None)
    code, summary, out = examples_graded
    assert code == 0, f"grade exited with {code}; summary: {summary}"
    return GradedSite(browser, out)


def screenshot_name(relative: str) -> str:
    """Return the screenshot name of a page: class-page, student-alice, instructor-dave and so on."""
    if relative == CLASS_PAGE:
        return "class-page"
    submission, view = relative.split("/")
    first_name = submission.split("_")[0]
    return f"{'student' if view == STUDENT else 'instructor'}-{first_name}"


# The recorder itself


def test_recorder_sees_outside_requests_and_errors(browser: BrowserSession, tmp_path: Path):
    """A page that requests remote files and throws is reported, so a clean log means something."""
    page_file = tmp_path / "leaky.html"
    page_file.write_text(
        "<!DOCTYPE html><html lang='en'><head><title>leaky</title>"
        "<link rel='stylesheet' href='http://127.0.0.1:9/font.css'></head><body><h1>Leaky</h1>"
        "<img alt='' src='https://127.0.0.1:9/logo.png'>"
        "<img alt='' src='data:image/gif;base64,R0lGODlhAQABAAAAACw='>"
        "<script>console.error('logged on purpose'); throw new Error('thrown on purpose');</script>"
        "</body></html>",
        encoding="utf-8",
    )

    with browser.open(page_file) as (page, log):
        assert page.locator("h1").inner_text() == "Leaky"

    assert log.requests[0] == page_file.resolve().as_uri()
    assert log.outside_requests() == ["http://127.0.0.1:9/font.css", "https://127.0.0.1:9/logo.png"]
    assert "logged on purpose" in log.console_errors
    assert any("thrown on purpose" in error for error in log.page_errors)
    with pytest.raises(AssertionError, match="not file: or data:"):
        log.assert_clean()


# Every page


@pytest.mark.parametrize("relative", PAGES)
def test_page_is_local_and_renders(site: GradedSite, relative: str):
    with site.open(relative) as (page, log):
        heading = page.locator("h1")
        assert heading.count() >= 1, f"{relative} has no <h1>"
        assert heading.first.inner_text().strip(), f"The <h1> of {relative} is empty"
        screenshot(page, screenshot_name(relative))

    log.assert_clean()


def test_class_page_at_phone_width(site: GradedSite):
    with site.open(CLASS_PAGE, viewport=PHONE_VIEWPORT) as (page, log):
        assert page.locator("h1").count() >= 1, "The class page has no <h1>"
        screenshot(page, "class-page-phone")

    log.assert_clean()


@pytest.mark.parametrize("relative", PAGES)
def test_headings_and_table_headers(site: GradedSite, relative: str):
    with site.open(relative) as (page, _log):
        assert page.locator("h1").count() >= 1, f"{relative} has no <h1>"
        tables = page.locator("table").count()
        without_headers = page.evaluate(
            "() => [...document.querySelectorAll('table')].flatMap((table, index) =>"
            " table.querySelector('th') ? [] : [table.id || `table ${index + 1}`])"
        )

    assert tables >= 1, f"{relative} has no table"
    assert not without_headers, f"Tables of {relative} without any <th>: {without_headers}"


@pytest.mark.parametrize("relative", PRINTED_PAGES)
def test_page_prints_to_pdf(site: GradedSite, relative: str):
    with site.open(relative) as (page, log):
        pdf = print_to_pdf(page)

    assert pdf.startswith(b"%PDF-"), f"Printing {relative} gave no PDF"
    assert len(pdf) > 1000, f"Printing {relative} gave a PDF of {len(pdf)} bytes"
    log.assert_clean()


# Sorting the class table

ROWS_SCRIPT = """
(scoreIndex) => [...document.querySelectorAll('#grades > tbody > tr')].map(row => {
  const first = row.cells[0];
  const link = first.querySelector('a');
  const id = (link ? link.textContent : first.textContent.split('\\n')[0]).trim();
  return [id, row.cells[scoreIndex] ? row.cells[scoreIndex].textContent : ''];
})
"""


def first_number(text: str) -> float:
    match = re.search(r"-?\d+(?:\.\d+)?", text)
    assert match, f"No number in the score cell {text!r}"
    return float(match.group())


def read_rows(page, score_index: int) -> list[tuple[str, float]]:
    return [(submission, first_number(cell)) for submission, cell in page.evaluate(ROWS_SCRIPT, score_index)]


def assert_sorted(rows: list[tuple[str, float]], direction: str, expected: dict[str, float]) -> None:
    scores = [score for _, score in rows]
    expected_order = sorted(scores, reverse=direction == "descending")
    assert scores == expected_order, f"aria-sort is {direction!r} but the scores read {scores} (rows {rows})"
    moved = {submission: score for submission, score in rows if abs(score - expected.get(submission, -1)) > 0.01}
    assert not moved, f"Rows lost their own score while sorting: {moved}; summary.json has {expected}"
    assert sorted(submission for submission, _ in rows) == sorted(expected), "Sorting added or dropped rows"


def test_class_table_sorts_by_score(site: GradedSite):
    expected = {submission: entry["score"] for submission, entry in site.json("summary.json")["submissions"].items()}

    with site.open(CLASS_PAGE) as (page, log):
        table = page.locator("table#grades")
        assert table.count() == 1, 'The class page has no <table id="grades">'
        headers = table.locator("thead th")
        names = [text.strip() for text in headers.all_inner_texts()]
        score_index = next((index for index, name in enumerate(names) if name.lower().startswith("score")), None)
        assert score_index is not None, f"No Score column among the headers {names}"
        score_header = headers.nth(score_index)
        assert score_header.locator("button").count() == 1, "The Score header holds no <button> to sort with"
        initial = read_rows(page, score_index)

        score_header.locator("button").click()
        first_direction = score_header.get_attribute("aria-sort")
        after_first = read_rows(page, score_index)

        score_header.locator("button").click()
        second_direction = score_header.get_attribute("aria-sort")
        after_second = read_rows(page, score_index)

    assert first_direction in ("ascending", "descending"), f"aria-sort after one click: {first_direction!r}"
    assert_sorted(after_first, first_direction, expected)
    # The page lists submissions by id; these four scores are in neither order, so any sort moves rows.
    assert [row[0] for row in after_first] != [row[0] for row in initial], f"One click left the order {initial}"

    opposite = {"ascending": "descending", "descending": "ascending"}[first_direction]
    assert second_direction == opposite, f"aria-sort after a second click: {second_direction!r}"
    assert_sorted(after_second, second_direction, expected)
    assert [row[0] for row in after_second] != [row[0] for row in after_first], "A second click left the order"
    log.assert_clean()


# Hidden checks and strings


def labelled(strings: Any) -> list[tuple[str, str]]:
    """Return (label, text) pairs from a tuple of pairs, a mapping of label to text, or plain strings."""
    if isinstance(strings, Mapping):
        return [(str(label), text) for label, text in strings.items()]
    return [(item[0], item[1]) if isinstance(item, tuple) else (item, item) for item in strings]


def string_sets() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Return PUBLIC_STRINGS and HIDDEN_STRINGS of the tokenization check, as (label, text) pairs."""
    from harness.checks import tokenization

    missing = [name for name in ("PUBLIC_STRINGS", "HIDDEN_STRINGS") if not hasattr(tokenization, name)]
    if missing:
        pytest.fail(f"harness.checks.tokenization defines no {' or '.join(missing)}. The round-trip strings "
                    f"(HARD_STRINGS) must be split into PUBLIC_STRINGS, shown to students, and HIDDEN_STRINGS, "
                    f"shown only in the instructor report.", pytrace=False)
    public, hidden = labelled(tokenization.PUBLIC_STRINGS), labelled(tokenization.HIDDEN_STRINGS)
    assert hidden, "HIDDEN_STRINGS is empty"
    return public, hidden


def needles(text: str) -> list[str]:
    """Return the forms in which a report could show a string: as is, escaped as the reports escape it, cut short."""
    forms = {text, visible_text(text)}
    forms |= {form[:PREFIX] for form in list(forms) if len(form) > PREFIX}
    return sorted(form for form in forms if len(form.replace(" ", "").strip()) >= MIN_NEEDLE)


def allowed_text(submission: str, public: list[tuple[str, str]]) -> str:
    """Return text a student view may show anyway: public strings, the rubric's prompts, the student's notebook."""
    rubric = Rubric()
    notebook_file = EXAMPLES / f"{submission}.ipynb"
    notebook = nbformat.read(notebook_file, as_version=4)
    parts = [text for _, text in public]
    parts += [*rubric.chat_prompts, rubric.response]
    parts += [cell.source for cell in notebook.cells]
    parts.append(notebook_file.read_text(encoding="utf-8"))
    return "\x00".join(parts)


def leaked(haystack: str, hidden: list[tuple[str, str]], allowed: str) -> list[str]:
    found = []
    for label, text in hidden:
        for needle in needles(text):
            if needle in haystack and needle not in allowed:
                found.append(f"{label}: {needle!r}")
    return found


def json_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key)
            yield from json_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from json_strings(item)


def page_text(page, source: str) -> str:
    """Return the page's whole text, collapsed parts included, followed by its unescaped source for attributes."""
    return page.evaluate("() => document.documentElement.textContent") + "\x00" + html.unescape(source)


@pytest.mark.parametrize("submission", SUBMISSIONS)
def test_student_view_has_no_hidden_strings(site: GradedSite, submission: str):
    relative = f"{submission}/{STUDENT}"
    with site.open(relative) as (page, _log):
        student_text = page_text(page, site.source(relative))
    gradescope_text = "\x00".join(json_strings(site.json(f"{submission}/results.json")))

    public, hidden = string_sets()
    allowed = allowed_text(submission, public)

    on_page = leaked(student_text, hidden, allowed)
    assert not on_page, f"{relative} shows hidden strings: {on_page}"
    exported = leaked(gradescope_text, hidden, allowed)
    assert not exported, f"{submission}/results.json shows hidden strings: {exported}"


def hidden_check_ids(page, result: dict) -> list[str]:
    """Return the ids of the checks whose row in the instructor report has data-visibility="hidden"."""
    marked = page.evaluate(
        "() => [...document.querySelectorAll('[data-visibility=\"hidden\"]')].map(row => [row.id, row.textContent])"
    )
    ids = []
    for check in result["checks"]:
        if any(element_id == f"check-{check['id']}" or check["id"] in text for element_id, text in marked):
            ids.append(check["id"])
    return ids


@pytest.mark.parametrize("submission", SUBMISSIONS)
def test_student_view_lists_hidden_checks(site: GradedSite, submission: str):
    result = site.json(f"{submission}/result.json")
    checks = {check["id"]: check for check in result["checks"]}

    with site.open(f"{submission}/{INSTRUCTOR}") as (page, _log):
        hidden = hidden_check_ids(page, result)
    assert hidden, f'No check row of {submission}/{INSTRUCTOR} carries data-visibility="hidden"'

    with site.open(f"{submission}/{STUDENT}") as (page, _log):
        rows = page.evaluate(
            "() => [...document.querySelectorAll('[data-visibility=\"hidden\"]')].map(row => row.textContent)"
        )
    for check_id in hidden:
        check = checks[check_id]
        naming = [row for row in rows if check_id in row or check["title"] in row]
        assert naming, f"{STUDENT} of {submission} has no hidden row naming {check_id} ({check['title']})"
        assert any(check["status"].lower() in row.lower() for row in naming), (
            f"{STUDENT} of {submission} names {check_id} but not its status {check['status']!r}: {naming}")


def failed_rows(result: dict) -> list[dict]:
    """Return the string rows that did not survive the round trip, from every check's details."""
    rows = []
    for check in result["checks"]:
        for row in (check.get("details") or {}).get("rows") or []:
            if isinstance(row, dict) and isinstance(row.get("text"), str) and row.get("passed") is False:
                rows.append(row)
    return rows


def test_instructor_report_shows_dave_hidden_failures(site: GradedSite):
    failures = failed_rows(site.json(f"{DAVE}/result.json"))
    _public, hidden = string_sets()
    hidden_texts = {text for _, text in hidden}
    hidden_failures = [row for row in failures if row["text"] in hidden_texts]
    assert hidden_failures, (f"{DAVE} fails {[row.get('label') for row in failures]}, none of them hidden, so the "
                             f"instructor report cannot be checked for hidden failures")
    relative = f"{DAVE}/{INSTRUCTOR}"

    with site.open(relative) as (page, _log):
        text = page_text(page, site.source(relative))

    for row in hidden_failures:
        matching = [needle for needle in needles(row["text"]) if needle in text]
        assert row["label"] in text or matching, f"{relative} does not show the failed hidden string {row['label']!r}"
        if needles(row["text"]):
            assert matching, f"{relative} names {row['label']!r} but does not show its text {row['text']!r}"


# Plots

ALTERNATIVES_SCRIPT = """
() => [...document.querySelectorAll('svg')].filter(svg => !svg.parentElement.closest('svg')).map(svg => {
  const title = svg.querySelector(':scope > title');
  const labelledBy = (svg.getAttribute('aria-labelledby') || '').split(/\\s+/).filter(Boolean)
    .map(id => (document.getElementById(id) || {}).textContent || '');
  const box = svg.getBoundingClientRect();
  const text = [svg.getAttribute('aria-label') || '', title ? title.textContent : '', ...labelledBy].join(' ').trim();
  return [text, box.width * box.height];
})
"""


def svg_alternatives(page) -> list[tuple[str, float]]:
    """Return (text alternative, drawn area) for each outermost inline <svg>."""
    return [(text, area) for text, area in page.evaluate(ALTERNATIVES_SCRIPT)]


def test_student_page_has_loss_plot(site: GradedSite):
    relative = f"{ALICE}/{STUDENT}"
    with site.open(relative) as (page, log):
        plots = svg_alternatives(page)

    assert plots, f"{relative} has no inline <svg>"
    loss_plots = [(text, area) for text, area in plots if "loss" in text.lower()]
    assert loss_plots, f"No <svg> of {relative} has a <title> or aria-label about the loss: {plots}"
    assert all(area > 0 for _, area in loss_plots), f"The loss plot takes no space: {loss_plots}"
    log.assert_clean()


def test_class_page_has_histogram(site: GradedSite):
    with site.open(CLASS_PAGE) as (page, log):
        plots = svg_alternatives(page)

    assert plots, "The class page has no inline <svg>"
    described = [(text, area) for text, area in plots if text]
    assert described, f"No <svg> of the class page has a <title> or aria-label: {plots}"
    assert all(area > 0 for _, area in described), f"The histogram takes no space: {described}"
    log.assert_clean()
