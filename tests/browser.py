"""Headless Chromium for the report tests: open a page, record what it loads and logs, save screenshots.

The browser is Debian's `chromium` package, driven through Playwright's sync API. Playwright's own browser
downloads are not used. Every context aborts requests that are not `file:` or `data:` before they leave the
browser, and still records them, so a page that requests a font or a CDN fails its test without touching
the network.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Route

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Host names resolve to nothing except the loopback address, whatever a page requests.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)
LOCAL_SCHEMES = ("file:", "data:")
SKIP_VARIABLE = "LAB_GRADER_SKIP_BROWSER"
INSTALL_HINT = (
    "Install the browser tests' dependencies with `apt-get install -y chromium` (as root, Debian's package) "
    "and `.venv/bin/pip install playwright`. Do not run `playwright install`: the tests launch "
    f"{CHROMIUM}. Set {SKIP_VARIABLE}=1 to skip the browser tests instead."
)
SCREENSHOTS = Path(__file__).resolve().parent / "artifacts" / "screenshots"
PHONE_VIEWPORT = {"width": 390, "height": 844}
DESKTOP_VIEWPORT = {"width": 1280, "height": 900}


def browser_problem() -> str | None:
    """Return what is missing to run the browser tests, or None when Playwright and Chromium are installed."""
    missing = []
    if importlib.util.find_spec("playwright") is None:
        missing.append("the Python package `playwright` is not installed in this environment")
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"no Chromium executable at {CHROMIUM}")
    if not missing:
        return None
    return f"Browser tests cannot run: {'; '.join(missing)}. {INSTALL_HINT}"


def skip_requested() -> bool:
    return os.environ.get(SKIP_VARIABLE) == "1"


def require_browser() -> None:
    """Skip when LAB_GRADER_SKIP_BROWSER=1. Otherwise fail with the install instructions when anything is missing."""
    if skip_requested():
        pytest.skip(f"{SKIP_VARIABLE}=1")
    problem = browser_problem()
    if problem:
        pytest.fail(problem, pytrace=False)


@dataclass
class PageLog:
    """Record of one open page: every request, the failed requests, console errors and uncaught errors."""

    requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def outside_requests(self) -> list[str]:
        """Return the requested URLs that are not `file:` or `data:` (http, https, ws, blob and others)."""
        return [url for url in self.requests if not url.startswith(LOCAL_SCHEMES)]

    def assert_clean(self) -> None:
        """Fail when the page requested anything outside the disk, logged a console error or threw an error."""
        outside = self.outside_requests()
        assert not outside, f"The page asked for {len(outside)} URL(s) that are not file: or data:: {outside}"
        assert not self.failed_requests, f"Requests that failed: {self.failed_requests}"
        assert not self.console_errors, f"Console errors: {self.console_errors}"
        assert not self.page_errors, f"Uncaught errors in the page: {self.page_errors}"


def allow_local_only(route: Route) -> None:
    if route.request.url.startswith(LOCAL_SCHEMES):
        route.continue_()
    else:
        route.abort("blockedbyclient")


@contextmanager
def chromium() -> Iterator[Browser]:
    """Launch Debian's Chromium headless through Playwright and close it afterwards."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(LAUNCH_ARGS))
        try:
            yield browser
        finally:
            browser.close()


def file_url(target: Path | str) -> str:
    return target if isinstance(target, str) else Path(target).resolve().as_uri()


@contextmanager
def open_page(
    browser: Browser, target: Path | str, *, viewport: dict | None = None
) -> Iterator[tuple[Page, PageLog]]:
    """Open a report (a path or a URL) in a fresh context, and yield the page with the log of its activity.

    The context is offline, and requests that are not `file:` or `data:` are aborted and recorded.
    """
    log = PageLog()
    context = browser.new_context(viewport=viewport or DESKTOP_VIEWPORT, offline=True)
    try:
        context.route("**/*", allow_local_only)
        context.on("request", lambda request: log.requests.append(request.url))
        context.on("requestfailed", lambda request: log.failed_requests.append(describe_failure(request)))
        page = context.new_page()
        page.on("console", lambda message: record_console(log, message))
        page.on("pageerror", lambda error: log.page_errors.append(str(error)))
        page.goto(file_url(target), wait_until="load")
        yield page, log
    finally:
        context.close()


def describe_failure(request: Request) -> str:
    return f"{request.url} ({request.failure})"


def record_console(log: PageLog, message: ConsoleMessage) -> None:
    if message.type == "error":
        log.console_errors.append(message.text)


class BrowserSession:
    """Chromium shared by a module's tests, or the reason it could not be launched, which every use then reports."""

    def __init__(self, browser: Browser | None, problem: str | None) -> None:
        self.browser = browser
        self.problem = problem

    def require(self) -> Browser:
        if self.problem or self.browser is None:
            pytest.fail(self.problem or "Chromium was not launched.", pytrace=False)
        return self.browser

    def open(self, target: Path | str, *, viewport: dict | None = None):
        """Open a page as `open_page` does, or fail with the install instructions when the browser is missing."""
        return open_page(self.require(), target, viewport=viewport)


@contextmanager
def browser_session() -> Iterator[BrowserSession]:
    """Launch Chromium and yield a session for a module's tests to share.

    A missing browser does not stop the session from starting: each test that opens a page fails with the
    install instructions, so the failure shows in every browser test instead of as a fixture error.
    """
    if skip_requested():
        pytest.skip(f"{SKIP_VARIABLE}=1")
    problem = browser_problem()
    if problem:
        yield BrowserSession(None, problem)
        return
    with chromium() as browser:
        yield BrowserSession(browser, None)


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page PNG as tests/artifacts/screenshots/NAME.png and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def print_to_pdf(page: Page) -> bytes:
    """Render the page with print media as an A4 PDF, as a browser's print dialog would."""
    page.emulate_media(media="print")
    return page.pdf(format="A4", print_background=True)
