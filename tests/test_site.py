"""The site builds strictly, and every chapter works in a real browser.

One module so that the build (a module-scoped fixture) runs once, on one
pytest-xdist worker (``--dist loadscope``), while the other worker executes the
chapters through nbval. The browser is Debian's chromium driven by Playwright,
headless and offline: any request that leaves the local server fails the test.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from .book import ROOT, chapter_paths, english_title

BUILD = ROOT / "_build"
HTML = BUILD / "html"
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = BUILD / "screenshots" / "q08_padding_mask.png"
CHEATSHEET_SCREENSHOT = BUILD / "screenshots" / "cheatsheet.png"
# sphinx-thebe 0.3.1 adds its one-line config script once per `env-before-read-docs`
# event, which this build emits twice; the second copy redeclares a `const`. Harmless
# here (the book launches Colab/Binder, not thebe), and the only error tolerated.
KNOWN_UPSTREAM_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",)


@pytest.fixture(scope="module")
def site() -> Path:
    """Build the book with warnings as errors into a clean _build/html.

    Only the HTML and the doctrees are removed: a failed strict build can pass
    on the rerun ("no targets are out of date") if they are kept, while the
    execution cache may stay and saves re-running unchanged notebooks.
    """
    shutil.rmtree(HTML, ignore_errors=True)
    shutil.rmtree(BUILD / ".doctrees", ignore_errors=True)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jupyter_book), "build", "-n", "-W", "--keep-going", str(ROOT)]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        reports = sorted((HTML / "reports").rglob("*.err.log")) if HTML.exists() else []
        logs = "\n\n".join(f"--- {r}\n{r.read_text()[-4000:]}" for r in reports)
        pytest.fail(
            f"jupyter-book build failed (exit {result.returncode}):\n"
            f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}\n{logs}",
            pytrace=False,
        )
    return HTML


def test_site_builds_with_warnings_as_errors(site: Path) -> None:
    assert (site / "index.html").exists()
    assert (site / "mathjax" / "tex-chtml.js").exists(), "MathJax is not served by the site"
    for nb in chapter_paths():
        page = site / nb.relative_to(ROOT).with_suffix(".html")
        assert page.exists(), f"no page for {nb.name}"
        assert (site / "_sources" / nb.relative_to(ROOT)).exists(), f"no .ipynb download for {nb}"


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    handler = functools.partial(QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep pytest's output readable
        pass


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail(
            "Debian's chromium is missing: install it with 'apt-get install chromium' "
            "(as root; `make test` does this itself when run as root)",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=flags)
        yield chromium
        chromium.close()


def straight_quotes(text: str) -> str:
    """Undo Sphinx's smart quotes (’ “ ”), so page text compares with the notebook's."""
    return text.replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"')


def open_offline(browser: object, url: str) -> tuple[object, list[str], list[str]]:
    """Open ``url``; return the page, requests that left the server, and JS errors."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    local = urlparse(url).netloc
    escaped: list[str] = []
    errors: list[str] = []

    def only_local(route: object) -> None:
        if urlparse(route.request.url).netloc == local:
            route.continue_()
        else:
            escaped.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)

    def record(err: object) -> None:
        if not any(known in str(err) for known in KNOWN_UPSTREAM_ERRORS):
            errors.append(str(err))

    page.on("pageerror", record)
    page.goto(url, wait_until="load")
    return page, escaped, errors


@pytest.mark.parametrize("notebook", chapter_paths(), ids=lambda p: p.stem)
def test_chapter_page_in_a_real_browser(browser: object, server: str, notebook: Path) -> None:
    rel = notebook.relative_to(ROOT).with_suffix(".html").as_posix()
    page, escaped, errors = open_offline(browser, f"{server}/{rel}")
    try:
        title = straight_quotes(page.locator("h1").first.inner_text())
        english = english_title(notebook)
        assert english in title, f"{rel}: expected the title {english!r}, got {title!r}"

        # math: MathJax (served locally) typesets every formula
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
        page.evaluate("() => MathJax.startup.promise")
        raw = page.locator("div.math:not(:has(mjx-container)), span.math:not(:has(mjx-container))")
        assert page.locator("mjx-container").count() > 0, f"{rel}: no rendered math"
        assert raw.count() == 0, f"{rel}: {raw.count()} formulas left as raw LaTeX"

        # figures: every image loaded
        broken = page.evaluate(
            "() => [...document.images].filter(i => !(i.complete && i.naturalWidth > 0))"
            ".map(i => i.src)"
        )
        assert page.locator("img").count() > 0, f"{rel}: no figure"
        assert not broken, f"{rel}: images that did not load: {broken}"

        # no error, traceback or warning output
        bad = page.locator(".output.traceback, .output.error, .output.stderr")
        assert bad.count() == 0, f"{rel}: error output shown: {bad.first.inner_text()[:500]}"
        assert "Traceback (most recent call last)" not in page.inner_text("main")

        # the quiz answers a click with feedback
        question = page.locator(".Quiz").first
        assert question.count() == 1, f"{rel}: no quiz rendered"
        assert question.locator(".Feedback").inner_text().strip() == ""  # nothing before a click
        question.locator(".MCButton").first.scroll_into_view_if_needed()
        question.locator(".MCButton").first.click()
        feedback = question.locator(".Feedback").element_handle()
        page.wait_for_function("el => el.innerText.trim().length > 0", arg=feedback)

        assert not errors, f"{rel}: JavaScript errors: {errors}"
        assert not escaped, f"{rel}: requests left the local server: {escaped}"
        if notebook.stem == SCREENSHOT.stem:
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=False)
    finally:
        page.close()


def test_landing_page_and_api_reference_offline(browser: object, server: str) -> None:
    for rel, expected in [("intro.html", "qkv"), ("appendix/api.html", "scaled_dot_product")]:
        page, escaped, errors = open_offline(browser, f"{server}/{rel}")
        try:
            text = page.inner_text("main")
            assert expected in text, f"{rel}: {expected!r} not on the page"
            assert ".. auto" not in text and ".. py:" not in text, f"{rel}: raw reST shown"
            assert not errors, f"{rel}: JavaScript errors: {errors}"
            assert not escaped, f"{rel}: requests left the local server: {escaped}"
        finally:
            page.close()
    page, _, _ = open_offline(browser, f"{server}/appendix/api.html")
    try:  # autodoc rendered real entries: one per public function and class
        names = page.locator("dl.py.function > dt, dl.py.class > dt").all_inner_texts()
        assert any("scaled_dot_product_attention" in n for n in names), names[:5]
        assert any("MultiHeadAttention" in n for n in names) and len(names) > 50, len(names)
    finally:
        page.close()


def test_cheatsheet_in_a_real_browser(browser: object, server: str) -> None:
    """Every question on one page, math rendered offline, both languages, a working deck link."""
    page, escaped, errors = open_offline(browser, f"{server}/appendix/cheatsheet.html")
    try:
        text = straight_quotes(page.inner_text("main"))
        for notebook in chapter_paths():
            assert english_title(notebook) in text, f"cheat sheet lacks {notebook.stem}"
        assert "30 秒回答（中文）" in text
        links = page.locator("main a.reference.internal").evaluate_all(
            "els => els.map(e => e.getAttribute('href'))"
        )
        for notebook in chapter_paths():
            assert any(notebook.stem in href for href in links), f"no link to {notebook.stem}"
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
        page.evaluate("() => MathJax.startup.promise")
        raw = page.locator("span.math:not(:has(mjx-container)), div.math:not(:has(mjx-container))")
        assert page.locator("mjx-container").count() > 0 and raw.count() == 0
        deck = page.locator("a[download]").first.get_attribute("href")
        status = page.evaluate("url => fetch(url).then(r => r.status)", deck)
        assert status == 200, f"the deck link {deck} answers {status}"
        assert not errors, f"JavaScript errors: {errors}"
        assert not escaped, f"requests left the local server: {escaped}"
        CHEATSHEET_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(CHEATSHEET_SCREENSHOT), full_page=False)
    finally:
        page.close()


def test_built_deck_matches_the_chapters(site: Path, tmp_path: Path) -> None:
    """The deck in the site: a note per chapter and quiz question, ids stable across builds."""
    from qkv import quiz

    from .test_takeaways import deck_notes, takeaways

    built = site / takeaways.DECK_FILE
    assert built.exists(), "the build did not write the Anki deck"
    notes = deck_notes(built)
    n_questions = sum(len(quiz.load(p.stem)) for p in chapter_paths())
    assert len(notes) == len(chapter_paths()) + n_questions
    rebuilt = tmp_path / "again.apkg"
    takeaways.write_deck(ROOT, rebuilt)
    assert [n[:2] for n in notes] == [n[:2] for n in deck_notes(rebuilt)], "note ids changed"

    q08 = next(ch for ch in takeaways.chapters(ROOT) if ch.stem == SCREENSHOT.stem)
    fields = next(f for _, _, f in notes if f[0].startswith("Q8."))
    assert q08.title in fields[0] and fields[1] == q08.title_zh
    assert "\\(-\\infty\\)" in fields[2], "math in Anki's delimiters"
    assert fields[4].endswith(f"{q08.docname}.html")
