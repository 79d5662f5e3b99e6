"""The web leaderboard (harness/page.py): the page's content and bytes from hand-made records, and
in a real headless browser (Debian's chromium driven by Playwright) its sorting, pictures and
console."""

from __future__ import annotations

import base64
import hashlib
import random
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from harness.render import board, plots
from harness.render.montage import save_montage
from harness.render.outputs import PAGE_FILE, write_outputs
from harness.render.page import render_page
from harness.results.record import error_record, ok_record
from tests.conftest import (
    BENCHMARK,
    PROBED,
    golden_records,
    meta,
    probe,
    probed_benchmark,
    probed_records,
    scores,
    yardstick,
)

HOSTILE = "<script>alert(1)</script>"
CHROMIUM = Path("/usr/bin/chromium")


class Page(HTMLParser):
    """What a test needs from a rendered page: each table (by the id of its section) as header
    cells and rows of cell text with the row's classes, the pictures, and the Errors list."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.section = ""
        self.tables: dict[str, dict] = {}
        self.images: list[str] = []
        self.errors: list[str] = []
        self.notes: dict[str, list[str]] = {}
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._text: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag in ("section", "footer"):
            self.section = attributes["id"] or ""
        elif tag == "table":
            self.tables[self.section] = {"header": [], "rows": [], "classes": []}
        elif tag == "tr":
            self._row = []
            self.tables[self.section]["classes"].append(attributes.get("class") or "")
        elif tag in ("th", "td", "li", "p"):
            self._cell = []
        elif tag == "img":
            self.images.append(attributes["src"] or "")

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        table = self.tables.get(self.section)
        if tag in ("th", "td") and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell))
        elif tag == "tr" and table is not None and self._row is not None:
            if table["header"]:
                table["rows"].append(self._row)
            else:
                table["header"] = self._row
                table["classes"].pop()
            self._row = None
        elif tag == "li" and self.section == "errors" and self._cell is not None:
            self.errors.append("".join(self._cell))
        elif tag == "p" and self._cell is not None:
            self.notes.setdefault(self.section, []).append("".join(self._cell))
        if tag in ("th", "td", "li", "p"):
            self._cell = None


def column(table: dict, name: str) -> list[str]:
    index = table["header"].index(name)
    return [row[index] for row in table["rows"]]


def hostile_records() -> list[dict]:
    """The golden records, one of them from a submission named like a script."""
    attacker = meta(HOSTILE, team='<b>bold</b>"><img src=x onerror=alert(2)>', method="")
    return [
        *golden_records(),
        ok_record(attacker, "sunglasses", scores(0.5, {"sunglasses": 0.5})),
        error_record(attacker, "multi-trigger", "</code><script>alert(3)</script>"),
    ]


def test_rendering_is_deterministic_and_order_independent() -> None:
    records = golden_records()
    first = render_page(board.board(BENCHMARK, records))
    assert render_page(board.board(BENCHMARK, records)) == first
    random.Random(5).shuffle(records)
    assert render_page(board.board(BENCHMARK, records)) == first
    assert first.startswith("<!DOCTYPE html>\n") and first.endswith("</html>\n")


def test_hostile_names_render_as_text() -> None:
    html = render_page(board.board(BENCHMARK, hostile_records()))
    assert html.count("<script>") == 1  # the page's own
    assert "<b>" not in html and "<img src=x" not in html and "alert(3)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    page = Page(html)
    assert HOSTILE in column(page.tables["overall"], "submission")
    assert '<b>bold</b>"><img src=x onerror=alert(2)>' in column(page.tables["overall"], "team")
    assert f"{HOSTILE} / multi-trigger: </code><script>alert(3)</script>" in page.errors


def test_every_track_table_is_present_with_its_rows() -> None:
    shown = board.board(BENCHMARK, golden_records())
    page = Page(render_page(shown))
    tables = [shown.overall, *(track.table for track in shown.tracks)]
    ids = ["overall", *(f"track-{i}" for i in range(1, len(shown.tracks) + 1))]
    assert list(page.tables) == ids
    for id_, table in zip(ids, tables, strict=True):
        parsed = page.tables[id_]
        assert parsed["header"] == table.columns
        # Cells as the Markdown shows them, less the table's escape of "|".
        assert parsed["rows"] == [[row[c].replace("\\|", "|") for c in table.columns]
                                  for row in table.rows]
        assert ["ref" in classes.split() for classes in parsed["classes"]] == table.references
    overall = page.tables["overall"]
    assert "Blue | Team" in column(overall, "team")
    assert column(overall, "submission")[column(overall, "team").index("organizers")] == \
        "badnet-original (ref)"
    multi = page.tables["track-2"]
    assert multi["rows"][-1][:2] == ["error", "neural-cleanse"]
    assert "failed" in multi["classes"][-1].split()
    assert "ASR[eyebrows]" in multi["header"]
    intro = board.INTRO  # the header's paragraphs
    assert page.notes[""][:len(intro)] == list(intro)


def test_pictures_are_linked_by_relative_path() -> None:
    records = [*golden_records(), error_record(meta("broken"), "sunglasses", "no model")]
    only_errors = [r for r in records if r["submission"] == "broken"]
    page = Page(render_page(board.board(BENCHMARK, records)))
    assert page.images == [plots.pareto_file("sunglasses"), plots.samples_file("sunglasses"),
                           plots.pareto_file("multi-trigger"), plots.samples_file("multi-trigger")]
    assert all(src.startswith("plots/") and "//" not in src for src in page.images)
    # A track without an OK row has no Pareto plot, only its test images.
    bare = Page(render_page(board.board(BENCHMARK, only_errors)))
    assert bare.images == [plots.samples_file("sunglasses"), plots.samples_file("multi-trigger")]


def test_page_requests_nothing_outside_its_folder() -> None:
    html = render_page(board.board(BENCHMARK, golden_records()))
    assert not re.search(r"https?:|//[a-z]|@import|url\(", html, flags=re.IGNORECASE)
    assert re.findall(r'(?:src|href)="([^"#][^"]*)"', html) == Page(html).images


def test_content_security_policy_allows_exactly_the_inline_style_and_script() -> None:
    html = render_page(board.board(BENCHMARK, golden_records()))

    def digest(tag: str) -> str:
        (body,) = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
        return "sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()

    (policy,) = re.findall(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert f"style-src '{digest('style')}'" in policy
    assert f"script-src '{digest('script')}'" in policy
    assert "default-src 'none'" in policy and "img-src 'self'" in policy


def test_errors_list_and_sample_note() -> None:
    page = Page(render_page(board.board(BENCHMARK, golden_records())))
    assert page.errors == ["neural-cleanse / multi-trigger: "
                           "eval.py exited with status 1: KeyError | 'conv_3'"]
    clean = [r for r in golden_records() if r["submission"] != "neural-cleanse"]
    assert Page(render_page(board.board(BENCHMARK, clean))).notes["errors"] == ["None."]
    sampled = [ok_record(meta(name), track, scores(0.9, {"sunglasses": 0.1}), sample=250)
               for name in ("a", "b") for track in ("sunglasses", "multi-trigger")]
    notes = Page(render_page(board.board(BENCHMARK, sampled))).notes
    assert notes["track-1"] == notes["track-2"] == \
        ["Graded on a stratified sample of 250 images per set."]
    assert "track-1" not in page.notes


def test_footer_states_the_provenance() -> None:
    html = render_page(board.board(BENCHMARK, golden_records()))
    footer = html.split('<footer id="provenance">', 1)[1]
    for name in sorted(BENCHMARK["data_hashes"]):
        assert f"<li>{name}: <code>{BENCHMARK['data_hashes'][name][:12]}</code></li>" in footer
    for name in ("badnet-original", "fine-pruning", "pruning-twin"):
        assert f"<li>{name}: <code>{meta(name)['sha256'][:12]}</code></li>" in footer
    assert "Graded with: harness 0.0.0, keras 3.15.0" in footer
    assert f"Rendered by harness {board.__version__}" in footer


def test_page_shows_p_asr_the_yardstick_and_the_legend() -> None:
    benchmark = probed_benchmark(sunglasses=yardstick(0.306),
                                 multi_trigger=yardstick(None, "no clean | model", 120, 24))
    shown = board.board(benchmark, probed_records())
    page = Page(render_page(shown))
    sunglasses = page.tables["track-1"]
    assert sunglasses["header"][sunglasses["header"].index("DER") + 1] == "P-ASR"
    p_asr = dict(zip(column(sunglasses, "submission"), column(sunglasses, "P-ASR"), strict=True))
    assert re.fullmatch(r"0\.875 \[0\.8\d\d, 0\.9\d\d\]", p_asr["fine-pruning"])
    assert p_asr["strip-detector"] == p_asr["pruning-twin"] == "-"
    assert column(sunglasses, "P-ASR") == [row["P-ASR"] for row in shown.tracks[0].table.rows]
    assert "mean P-ASR" in page.tables["overall"]["header"]
    assert page.notes["track-1"] == [shown.tracks[0].retuning]
    assert "reaches P-ASR 0.306 [" in page.notes["track-1"][0]
    assert page.notes["track-2"] == [(shown.tracks[1].retuning or "").replace("\\|", "|")]
    assert page.notes["track-2"][0].endswith("Yardstick: not measured (no clean | model).")
    assert board.PROBE_LEGEND in page.notes[""]
    assert any(error.startswith("pruning-twin / sunglasses: retuning probe: ")
               for error in page.errors)


def test_page_without_the_probe_shows_no_trace_of_it() -> None:
    html = render_page(board.board(BENCHMARK, golden_records()))
    assert "P-ASR" not in html and "Retuning probe" not in html and "retuning" not in html


# In a browser ------------------------------------------------------------------------------------


BROWSER_BENCHMARK = probed_benchmark()
"""The benchmark with the retuning probe's yardstick on sunglasses."""


def browser_records() -> list[dict]:
    """The hostile records with costs on some rows and none ("-") on others, and P-ASR on
    some model entries."""
    costs = {"badnet-original": (601643, 4.5266e6, 1.0), "fine-pruning": (601643, 4.5266e6, 1.0),
             "strip-detector": (1203286, 40.77e6, 9.0), "pruning-twin": (601643, 4.5266e6, 1.0)}
    records = []
    for record in hostile_records():
        params, macs, passes = costs.get(record["submission"], (None, None, None))
        if record["status"] == "ok":
            record = {**record, "params": params, "macs_per_image": macs,
                      "passes_per_image": passes,
                      **PROBED.get((record["submission"], record["track"]), probe(None))}
        records.append(record)
    return records


@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium driven by Playwright (never ``playwright install``: the system browser)."""
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="Playwright is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        pytest.skip(f"no browser at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def board_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A board as ``grade`` writes it, with a montage of small random images per track."""
    folder = tmp_path_factory.mktemp("board")
    write_outputs(folder, BROWSER_BENCHMARK, browser_records())
    generator = np.random.default_rng(0)
    for track in BENCHMARK["tracks"]:
        rows = [generator.integers(0, 256, (4, 11, 9, 3), dtype=np.uint8) for _ in range(2)]
        save_montage(rows, ["clean", "poisoned"], folder / plots.samples_file(track))
    return folder


@pytest.fixture
def page(chromium, board_folder: Path):
    """The board's page from ``file://``, with every console error, page error, dialog and
    request outside the folder collected (each test asserts there were none)."""
    opened = chromium.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    opened.on("console", lambda message: message.type == "error"
              and problems.append(f"console: {message.text}"))
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"),
                                        dialog.dismiss()))
    opened.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
    opened.on("request", lambda request: request.url.startswith(board_folder.as_uri())
              or problems.append(f"request outside the folder: {request.url}"))
    opened.goto((board_folder / PAGE_FILE).as_uri(), wait_until="load")
    yield opened
    opened.close()
    assert problems == []


def cells(page, table: str, name: str) -> list[str]:
    """The text of one column of a table, in the order the page shows its rows."""
    return page.eval_on_selector(
        f"#{table} table",
        """(table, name) => {
             const index = [...table.tHead.rows[0].cells].findIndex(th => th.textContent === name);
             return [...table.tBodies[0].rows].map(row => row.cells[index].textContent);
           }""",
        name,
    )


def expected_order(values: list[str], numeric: bool, descending: bool) -> list[str]:
    """The order the page should give, computed independently: missing values last either way,
    numbers by their leading number, text case-insensitively, ties in the original order."""
    def key(text: str) -> float | str:
        if not numeric:
            return text.casefold()
        match = re.match(r"=?(-?\d[\d,]*(?:\.\d+)?)", text)
        assert match, text
        return float(match[1].replace(",", ""))

    present = [text for text in values if text not in ("-", "error")]
    missing = [text for text in values if text in ("-", "error")]
    return sorted(present, key=key, reverse=descending) + missing


@pytest.mark.slow
@pytest.mark.parametrize(
    ("table", "name", "numeric"),
    [("track-2", "utility", True), ("track-2", "rank", True), ("track-1", "params", True),
     ("track-1", "MACs/image", True), ("overall", "score", True), ("overall", "team", False),
     ("overall", "method", False), ("track-1", "P-ASR", True), ("track-2", "P-ASR", True),
     ("overall", "mean P-ASR", True), ("track-2", "submission", False)],
)
def test_clicking_a_header_sorts_its_table(page, table: str, name: str, numeric: bool) -> None:
    before = cells(page, table, name)
    header = page.locator(f"#{table} thead th", has_text=re.compile(rf"^{re.escape(name)}$"))
    header.click()
    assert header.get_attribute("aria-sort") == "ascending"
    ascending = cells(page, table, name)
    assert ascending == expected_order(before, numeric, descending=False)
    header.click()
    assert header.get_attribute("aria-sort") == "descending"
    assert cells(page, table, name) == expected_order(before, numeric, descending=True)
    header.click()
    assert cells(page, table, name) == ascending


@pytest.mark.slow
def test_shared_ranks_and_missing_values_sort_as_numbers_and_last(page) -> None:
    page.locator("#track-2 thead th", has_text=re.compile("^rank$")).click()
    ranks = cells(page, "track-2", "rank")
    assert ranks[:2] == ["=1", "=1"] and ranks[-2:] == ["error", "error"]
    names = cells(page, "track-1", "submission")
    params = dict(zip(names, cells(page, "track-1", "params"), strict=True))
    header = page.locator("#track-1 thead th", has_text=re.compile("^params$"))
    header.click()
    header.locator("button").press("Enter")  # by keyboard too
    assert header.get_attribute("aria-sort") == "descending"
    assert cells(page, "track-1", "params") == \
        ["1,203,286", "601,643", "601,643", "601,643", "-", "-"]
    # Equal cells keep the board's order.
    assert cells(page, "track-1", "submission")[1:4] == \
        [name for name in names if params[name] == "601,643"]


@pytest.mark.slow
def test_every_picture_loads_and_names_show_as_text(page) -> None:
    pictures = page.eval_on_selector_all(
        "img", "images => images.map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
    assert len(pictures) == 4
    assert all(complete and width > 0 for _, complete, width in pictures), pictures
    assert page.locator("#overall tbody td", has_text=HOSTILE).count() == 1
    assert page.locator("#overall tbody b").count() == 0
    assert page.locator("#errors li").count() == 3  # two failed tracks, one failed probe
    # The script ran under the page's Content-Security-Policy: headers became buttons.
    assert page.locator("#overall thead th button").count() == 10


@pytest.mark.slow
def test_page_reads_without_javascript(chromium, board_folder: Path) -> None:
    """Without JavaScript the tables show in the board's order, with plain headers."""
    context = chromium.new_context(java_script_enabled=False)
    opened = context.new_page()
    opened.goto((board_folder / PAGE_FILE).as_uri())
    shown = board.board(BROWSER_BENCHMARK, browser_records())
    names = opened.eval_on_selector_all(
        "#track-2 tbody tr", "rows => rows.map(row => row.cells[1].textContent)")
    assert names == [row["submission"] for row in shown.tracks[1].table.rows]
    assert opened.locator("thead th button").count() == 0
    widths = opened.eval_on_selector_all("img", "images => images.map(i => i.naturalWidth)")
    assert len(widths) == 4 and min(widths) > 0
    context.close()
