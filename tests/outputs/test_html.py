"""The self-contained HTML report (``llmsize.outputs.html``).

Fast tests build a small report folder in ``tmp_path``; one test renders the
committed ``reports/default`` (read-only: the page is written to ``tmp_path``)
and opens it in headless Chromium, skipped where Chromium or Playwright is
missing.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from llmsize.outputs.html import render_html, write_html, write_pages  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REPORT = REPO_ROOT / "reports" / "default"
DATA_DIR = REPO_ROOT / "data"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

PASSING = {
    "divergences": 0,
    "draws": 200,
    "chains": 2,
    "max_r_hat": 1.004,
    "min_ess_bulk": 650.0,
    "worst_r_hat": "model-a 2024-01-01 <b>p</b>",
    "worst_ess": "model-a 2024-01-01 p",
    "all_max_r_hat": 1.02,
    "all_min_ess_bulk": 300.0,
    "passed": True,
    "failures": [],
    "data_dir": "data",
    "hypothesis_name": "toy",
    "sampler_settings": json.dumps({"chains": 2, "draws": 200, "sampler": "nutpie"}),
    "seed": "7",
}

README = """\
# How big is toy?

Intro with <script>alert("readme")</script> raw HTML.

| model | median (B) |
|---|---|
| toy-model | 42 |

![size by date](size_by_date.png)

![remote](https://example.com/remote.png)

## Diagnostics

The run's checks.
"""


def _make_report(root: Path, diagnostics: dict | None = None) -> tuple[Path, Path]:
    """A small report folder and data directory under ``root``."""
    report = root / "report"
    data = root / "data"
    report.mkdir()
    data.mkdir()
    (report / "README.md").write_text(README, encoding="utf-8")
    fig, ax = plt.subplots(figsize=(1, 1), dpi=20)
    ax.plot([0, 1], [0, 1])
    fig.savefig(report / "size_by_date.png")
    plt.close(fig)
    (report / "diagnostics.json").write_text(
        json.dumps(PASSING if diagnostics is None else diagnostics), encoding="utf-8"
    )
    (report / "hypothesis.json").write_text(
        json.dumps({"name": "toy", "description": "a </pre><script>x</script> test"}),
        encoding="utf-8",
    )
    (data / "prices.csv").write_text(
        "model,price,source,notes\n"
        'a,1,"https://example.org/pricing?a=1&b=2 (archived, 2024)",n\n'
        'b,2,"<script>alert(1)</script> | see https://example.net/x).",n\n'
        'c,3,"https://example.org/pricing?a=1&b=2 (archived, 2024)",n\n',
        encoding="utf-8",
    )
    (data / "notes.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    return report, data


def _badges(page: str) -> list[str]:
    return re.findall(r'class="badge (?:pass|fail|na)">([A-Z/]+)<', page)


def test_page_is_self_contained(tmp_path: Path) -> None:
    report, data = _make_report(tmp_path)
    page = render_html(report, data)
    assert page.startswith("<!DOCTYPE html>")
    assert 'src="http' not in page
    assert '<link rel="stylesheet"' not in page
    assert "<script" not in page
    srcs = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert len(srcs) == 1
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    # The remote image is named, not loaded.
    assert "image not embedded" in page
    assert "https://example.com/remote.png" in page
    assert "<title>How big is toy?</title>" in page


def test_diagnostics_box_opens_the_diagnostics_section(tmp_path: Path) -> None:
    """The answer first: the run's box sits below the results, not under the title;
    a family page (which states its own models' diagnostics) gets none."""
    report, data = _make_report(tmp_path)
    page = render_html(report, data)
    box = page.index('id="diagnostics-box"')
    assert page.index("toy-model") < box < page.index("<h2>Diagnostics</h2>")
    # Without such a section the box closes the report text.
    (report / "README.md").write_text(README.split("## Diagnostics")[0], encoding="utf-8")
    page = render_html(report, data)
    assert page.index("toy-model") < page.index('id="diagnostics-box"')
    (report / "family-toy.md").write_text("# How big is toy?\n\n## Sampler diagnostics\n")
    assert 'id="diagnostics-box"' not in render_html(report, data, page="family-toy.md")


def test_markdown_table_and_raw_html_escaped(tmp_path: Path) -> None:
    report, data = _make_report(tmp_path)
    page = render_html(report, data)
    assert "<table>" in page
    # A one-word cell is kept on one line (not broken at its hyphens).
    assert '<td class="nowrap">toy-model</td>' in page
    assert "&lt;script&gt;alert(&quot;readme&quot;)&lt;/script&gt;" in page


def test_sources_are_links_and_escaped(tmp_path: Path) -> None:
    report, data = _make_report(tmp_path)
    page = render_html(report, data)
    assert (
        '<a href="https://example.org/pricing?a=1&amp;b=2" rel="noopener noreferrer">'
        "https://example.org/pricing?a=1&amp;b=2</a> (archived, 2024)"
    ) in page
    # Trailing ")." is punctuation, not part of the URL.
    assert '<a href="https://example.net/x" rel="noopener noreferrer">' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # Distinct sources, counted; a CSV without a source column is left out.
    assert "prices.csv" in page
    assert "2 sources, 3 rows" in page
    assert "(2 rows)" in page
    assert "notes.csv" not in page


def test_hypothesis_in_details(tmp_path: Path) -> None:
    report, data = _make_report(tmp_path)
    page = render_html(report, data)
    block = page[page.index("<details>") : page.index("</details>")]
    assert "<summary>Hypothesis <code>toy</code>" in block
    assert "&lt;/pre&gt;&lt;script&gt;x&lt;/script&gt;" in block


def test_passing_diagnostics(tmp_path: Path) -> None:
    report, data = _make_report(tmp_path)
    page = render_html(report, data)
    # Overall, then R-hat, ESS, divergences; the all-quantity row is information only.
    assert _badges(page) == ["PASS", "PASS", "PASS", "PASS", "INFO"]
    assert 'class="diagnostics pass"' in page
    assert "model-a 2024-01-01 &lt;b&gt;p&lt;/b&gt;" in page
    assert "sampler_settings" not in page
    assert "nutpie" in page


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"max_r_hat": 1.05}, ["FAIL", "FAIL", "PASS", "PASS"]),
        ({"min_ess_bulk": 120.0}, ["FAIL", "PASS", "FAIL", "PASS"]),
        ({"divergences": 3}, ["FAIL", "PASS", "PASS", "FAIL"]),
        ({"max_r_hat": float("nan")}, ["FAIL", "FAIL", "PASS", "PASS"]),
        ({"max_r_hat": 1.01, "min_ess_bulk": 400}, ["PASS", "PASS", "PASS", "PASS"]),
    ],
)
def test_failing_diagnostics(tmp_path: Path, change: dict, expected: list[str]) -> None:
    diag = {**PASSING, **change, "failures": ["R-hat <too high>"]}
    report, data = _make_report(tmp_path, diag)
    page = render_html(report, data)
    assert _badges(page)[:4] == expected
    assert f'class="diagnostics {expected[0].lower()}"' in page
    assert "R-hat &lt;too high&gt;" in page


def test_missing_diagnostic_fields_are_not_passed(tmp_path: Path) -> None:
    diag = {k: v for k, v in PASSING.items() if k != "min_ess_bulk"}
    report, data = _make_report(tmp_path, diag)
    assert _badges(render_html(report, data))[:4] == ["N/A", "PASS", "N/A", "PASS"]


def test_optional_inputs_and_missing_readme(tmp_path: Path) -> None:
    report, _ = _make_report(tmp_path)
    (report / "diagnostics.json").unlink()
    (report / "hypothesis.json").unlink()
    page = render_html(report)
    assert "badge" not in page.split("</style>")[1]
    assert "No data directory was given" in page
    with pytest.raises(FileNotFoundError, match=r"README\.md"):
        render_html(tmp_path / "data")


def test_no_image_outside_the_report_folder(tmp_path: Path) -> None:
    report, data = _make_report(tmp_path)
    (tmp_path / "secret.png").write_bytes((report / "size_by_date.png").read_bytes())
    (report / "README.md").write_text(
        "# r\n\n![a](../secret.png)\n\n![b](/etc/passwd)\n\n![c](file:///etc/passwd)\n",
        encoding="utf-8",
    )
    page = render_html(report, data)
    assert "<img" not in page
    # markdown-it refuses a file: URL outright; the other two are named, not embedded.
    assert page.count("image not embedded") == 2


def test_write_html(tmp_path: Path) -> None:
    report, data = _make_report(tmp_path)
    path = write_html(report, data_dir=data)
    assert path == report / "index.html"
    assert path.read_text(encoding="utf-8") == render_html(report, data)
    other = write_html(report, tmp_path / "page.html")
    assert other.is_file()
    assert sorted(p.name for p in report.iterdir()) == [
        "README.md",
        "diagnostics.json",
        "hypothesis.json",
        "index.html",
        "size_by_date.png",
    ]


def _screenshots(page, stem: Path) -> list[Path]:
    """The whole page, one viewport at a time.

    A single full-page capture of a page taller than Chromium's 16384-pixel
    texture limit can hang until the screenshot times out (the expanded index,
    with every source table open, is about 26000 pixels tall), so the page is
    scrolled and captured a screen at a time instead.
    """
    height = page.evaluate("document.documentElement.scrollHeight")
    step = page.viewport_size["height"]
    shots = []
    for k, top in enumerate(range(0, height, step)):
        page.evaluate(f"window.scrollTo(0, {top})")
        shot = stem.with_name(f"{stem.name}-{k:02d}.png")
        page.screenshot(path=str(shot), timeout=15_000)
        shots.append(shot)
    return shots


#: Where the answer sentence and the first chart of a page sit before any scrolling.
_FIRST_SCREEN = """() => {
  const answer = Array.from(document.querySelectorAll("main p"))
    .find(p => p.textContent.startsWith("Answer:"));
  const chart = document.querySelector("main img");
  const a = answer ? answer.getBoundingClientRect() : null;
  const c = chart ? chart.getBoundingClientRect() : null;
  return {
    answer: answer ? answer.textContent : null, answerBottom: a ? a.bottom : null,
    chart: chart ? chart.alt : null, chartTop: c ? c.top : null, chartBottom: c ? c.bottom : null,
  };
}"""


def test_default_report_renders_in_chromium(tmp_path: Path) -> None:
    """The committed report opens in headless Chromium: every image decodes,
    nothing is fetched from outside the file, and the console stays clean."""
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not installed: {CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.skip(f"Chromium not installed: the Playwright driver is missing ({exc})")

    start = time.monotonic()
    # A copy of the committed report (the pages are written beside their Markdown).
    copy = tmp_path / "report"
    shutil.copytree(DEFAULT_REPORT, copy, ignore=shutil.ignore_patterns("*.nc", "*.html"))
    paths = write_pages(copy, data_dir=DATA_DIR)
    assert paths[0].name == "index.html"
    family_pages = [p for p in paths if p.name.startswith("family-")]
    assert len(family_pages) >= 3, "the gpt-3.5, GPT-4 and GPT-4o families each have a page"
    seen: dict[str, dict] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            for path in paths:
                url = path.as_uri()
                console_errors: list[str] = []
                requests: list[str] = []
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.on(
                    "console",
                    lambda msg, errs=console_errors: (
                        errs.append(msg.text) if msg.type == "error" else None
                    ),
                )
                page.on("pageerror", lambda exc, errs=console_errors: errs.append(str(exc)))
                page.on("request", lambda req, reqs=requests: reqs.append(req.url))
                page.goto(url, wait_until="load", timeout=15_000)
                first_screen = page.evaluate(_FIRST_SCREEN)
                seen[path.name] = {
                    "first_screen": first_screen,
                    "url": url,
                    "errors": console_errors,
                    "requests": requests,
                    "images": page.evaluate(
                        "() => Array.from(document.images, i => [i.complete, i.naturalWidth, i.alt])"
                    ),
                    "title": page.title(),
                    "headings": page.eval_on_selector_all(
                        "h2", "els => els.map(e => e.textContent)"
                    ),
                    "links": page.eval_on_selector_all(
                        "a", "els => els.map(e => e.getAttribute('href'))"
                    ),
                }
                shots = _screenshots(page, tmp_path / path.stem)
                assert all(shot.stat().st_size > 10_000 for shot in shots), path.name
                if path.name == "index.html":
                    # Once more with every <details> block (hypothesis, sources) open.
                    height = page.evaluate("document.documentElement.scrollHeight")
                    page.evaluate(
                        "() => document.querySelectorAll('details').forEach(d => { d.open = true; })"
                    )
                    assert page.evaluate("document.documentElement.scrollHeight") > height
                    expanded = _screenshots(page, tmp_path / "report-expanded")
                page.close()
        finally:
            browser.close()

    for name, got in seen.items():
        md = copy / ("README.md" if name == "index.html" else name.replace(".html", ".md"))
        assert len(got["images"]) == md.read_text(encoding="utf-8").count("!["), name
        assert all(complete and width > 0 for complete, width, _ in got["images"]), name
        assert got["errors"] == [], name
        assert got["requests"] == [got["url"]], name
        assert any("Sampler diagnostics" in h for h in got["headings"]), name
        assert "Data sources" in got["headings"], name
        # The answer first: on a 1280x800 screen, before any scrolling, the sentence
        # with the sizes in numbers and the whole headline chart.
        first = got["first_screen"]
        assert first["answer"] is not None, name
        assert re.search(r"[\d.]+B \[[\d.]+-[\d.]+\] total, [\d.]+B \[[\d.]+-[\d.]+\] active",
                         first["answer"]), name  # fmt: skip
        assert first["answerBottom"] <= 800, (name, first)
        assert first["chart"] is not None, (name, first)
        assert "by date" in first["chart"], (name, first)
        assert 0 < first["chartTop"] < first["chartBottom"] <= 800, (name, first)
    index = seen["index.html"]
    assert index["title"] == "How big is ChatGPT?"
    assert {p.name for p in family_pages} <= set(index["links"])
    assert "Price cuts, decomposed" in index["headings"]
    assert all(shot.stat().st_size > 10_000 for shot in expanded)
    assert time.monotonic() - start < 120
