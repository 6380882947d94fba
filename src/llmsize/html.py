"""One self-contained HTML page from a report folder.

``render_html`` reads what ``llmsize infer`` writes into a report folder and
returns a single HTML document that needs nothing else to display:

- ``README.md``, the report text, converted with markdown-it-py (CommonMark
  plus tables; raw HTML in the Markdown is escaped, not passed through);
- every image the README references, embedded as a base64 ``data:`` URI
  (an image that is not a file inside the report folder is replaced by a
  visible note, never linked);
- ``diagnostics.json`` as a box of PASS/FAIL badges, one per convergence check
  (R-hat <= 1.01 and bulk ESS >= 400 over the reported quantities, zero
  divergences), with the run's settings;
- ``hypothesis.json`` in a collapsible ``<details>`` block;
- the data sources: the distinct values of the ``source`` column of every CSV
  file in ``data_dir``, with each http(s) URL turned into a link.

The page loads no external resource (no CDN, font, script or remote image),
carries its own small stylesheet, and declares a Content-Security-Policy that
forbids everything but inline styles and ``data:`` images, so a browser would
refuse anything else. Every piece of text from the folder is escaped.

``write_html`` writes the page, by default to ``report_dir / "index.html"``.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import json
import math
import os
import re
import tempfile
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from markdown_it import MarkdownIt

from llmsize import __version__

__all__ = ["render_html", "write_html", "write_pages"]

#: Convergence thresholds; the same as ``llmsize.summary`` (a test checks).
RHAT_MAX = 1.01
ESS_BULK_MIN = 400

#: Image types that are embedded, by file suffix.
_IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
}

#: Table cells at most this long are kept on one line.
_NOWRAP_CHARS = 16

#: An http(s) URL inside free text; trailing punctuation is trimmed after.
_URL_RE = re.compile(r"https?://[^\s<>\"'|]+")

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body {
  margin: 0; padding: 1.5rem 1rem 3rem; background: #f6f7f9; color: #1d2330;
  font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
main {
  max-width: 1180px; margin: 0 auto; padding: 1.5rem 2rem 2rem; background: #fff;
  border: 1px solid #dde1e7; border-radius: 6px;
}
h1 { font-size: 1.7rem; margin: 0.2rem 0 1rem; }
h2 { font-size: 1.3rem; margin: 2.2rem 0 0.8rem; padding-bottom: 0.25rem; border-bottom: 1px solid #dde1e7; }
h3 { font-size: 1.05rem; margin: 1.4rem 0 0.5rem; }
a { color: #1a5fb4; overflow-wrap: anywhere; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 0.88em; }
code { background: #f0f2f5; padding: 0.05em 0.3em; border-radius: 3px; overflow-wrap: anywhere; }
pre { background: #f0f2f5; padding: 0.8rem 1rem; border-radius: 4px; overflow-x: auto; line-height: 1.4; white-space: pre-wrap; overflow-wrap: anywhere; }
pre code { background: none; padding: 0; }
.table-wrap { overflow-x: auto; margin: 0.8rem 0 1.2rem; }
table { border-collapse: collapse; font-size: 0.86rem; }
th, td { border: 1px solid #c9ced6; padding: 0.3rem 0.55rem; text-align: left; vertical-align: top; }
th { background: #eef1f5; }
th.nowrap, td.nowrap { white-space: nowrap; }
tbody tr:nth-child(even) { background: #f8f9fb; }
img { display: block; max-width: 100%; height: auto; margin: 1rem auto; }
.missing-image { display: block; padding: 0.6rem; border: 1px dashed #b42318; color: #b42318; }
.badge {
  display: inline-block; min-width: 3.2em; padding: 0.1em 0.5em; border-radius: 3px;
  font-size: 0.78rem; font-weight: 700; letter-spacing: 0.03em; text-align: center; color: #fff;
}
.badge.pass { background: #1e7b34; }
.badge.fail { background: #b42318; }
.badge.na { background: #6b7280; }
.diagnostics { border: 1px solid #c9ced6; border-left: 6px solid #6b7280; border-radius: 4px; padding: 0.8rem 1.1rem; margin: 1rem 0 1.6rem; background: #fbfcfd; }
.diagnostics.pass { border-left-color: #1e7b34; }
.diagnostics.fail { border-left-color: #b42318; }
.diagnostics h2 { margin: 0 0 0.6rem; border: 0; padding: 0; font-size: 1.1rem; }
.diagnostics table { margin: 0.4rem 0; }
.diagnostics .meta { display: flex; flex-wrap: wrap; gap: 0.15rem 1.4rem; margin: 0.5rem 0 0; color: #4b5563; font-size: 0.85rem; }
.diagnostics .meta .k { font-weight: 600; margin-right: 0.35rem; }
.diagnostics ul.failures { color: #b42318; margin: 0.4rem 0; }
details { margin: 0.5rem 0; border: 1px solid #dde1e7; border-radius: 4px; padding: 0.4rem 0.8rem; }
details > summary { cursor: pointer; font-weight: 600; }
details[open] > summary { margin-bottom: 0.4rem; }
ul.sources li { margin: 0.2rem 0; }
.count { color: #6b7280; font-size: 0.85em; font-weight: normal; }
.note { color: #4b5563; }
footer { max-width: 1180px; margin: 1rem auto 0; color: #6b7280; font-size: 0.8rem; text-align: center; }
"""


def render_html(
    report_dir: Path | str, data_dir: Path | str | None = None, *, page: str = "README.md"
) -> str:
    """The report in ``report_dir`` as one self-contained HTML document.

    ``page`` (default ``README.md``) is the Markdown file of the page; a link
    in it to another Markdown page of the folder points to that page's HTML.
    ``report_dir`` must hold ``page``; ``diagnostics.json`` and
    ``hypothesis.json`` are shown when present. ``data_dir``, if given, is the
    data directory of the run: the sources of its CSV files are listed.
    Reads files only; writes nothing.
    """
    report_dir = Path(report_dir)
    readme = report_dir / page
    if Path(page).name != page or not readme.is_file():
        raise FileNotFoundError(f"{readme}: no report text (is {report_dir} a report folder?)")
    text = readme.read_text(encoding="utf-8")
    body, title = _markdown_to_html(text, report_dir)

    diagnostics = _read_json(report_dir / "diagnostics.json")
    hypothesis_path = report_dir / "hypothesis.json"
    extra = [
        _hypothesis_html(hypothesis_path, diagnostics),
        _sources_html(Path(data_dir) if data_dir is not None else None, diagnostics),
    ]

    # The diagnostics box goes right under the title, before the report text.
    box = _diagnostics_html(diagnostics) if diagnostics is not None else ""
    head, sep, rest = body.partition("</h1>")
    body = head + sep + "\n" + box + rest if sep else box + body

    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{escape(_CSP)}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<meta name="generator" content="llmsize {escape(__version__)}">',
            f"<title>{escape(title)}</title>",
            # An empty icon, so a browser asks for no favicon.ico.
            '<link rel="icon" href="data:,">',
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            "<main>",
            body,
            *extra,
            "</main>",
            # No folder name here: a report is written in a temporary folder, and the
            # page must be the same bytes for the same run.
            f"<footer>Written by llmsize {escape(__version__)} from {escape(page)} and the files "
            "beside it; a single file, with every image embedded.</footer>",
            "</body>",
            "</html>",
            "",
        ]
    )


def write_html(
    report_dir: Path | str,
    dest: Path | str | None = None,
    *,
    data_dir: Path | str | None = None,
    page: str = "README.md",
) -> Path:
    """Write ``render_html(report_dir, data_dir, page=page)`` to ``dest`` and return its path.

    ``dest`` defaults to ``report_dir / "index.html"`` for ``README.md`` and to
    the page's name with ``.html`` otherwise. The file is replaced atomically
    (written beside it, then renamed).
    """
    report_dir = Path(report_dir)
    if dest is None:
        dest = report_dir / _html_name(page)
    dest = Path(dest)
    text = render_html(report_dir, data_dir, page=page)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return dest


def write_pages(report_dir: Path | str, *, data_dir: Path | str | None = None) -> list[Path]:
    """Write ``index.html`` from ``README.md`` and one HTML page for each other
    Markdown page of the folder (the family pages), and return their paths."""
    report_dir = Path(report_dir)
    pages = ["README.md", *sorted(p.name for p in report_dir.glob("*.md") if p.name != "README.md")]
    return [write_html(report_dir, data_dir=data_dir, page=page) for page in pages]


def _html_name(page: str) -> str:
    return "index.html" if page == "README.md" else Path(page).stem + ".html"


# --------------------------------------------------------------------------
# Markdown


def _markdown_to_html(text: str, report_dir: Path) -> tuple[str, str]:
    """The README as HTML, with its images embedded, and the page title."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    root = report_dir.resolve()

    def image(renderer: Any, tokens: list, idx: int, options: Any, env: Any) -> str:
        token = tokens[idx]
        src = str(token.attrGet("src") or "")
        uri = _embedded_image(src, root)
        if uri is None:
            alt = renderer.renderInlineAsText(token.children or [], options, env)
            return (
                '<span class="missing-image">image not embedded: '
                f"{escape(alt)} (<code>{escape(unquote(src))}</code>)</span>"
            )
        token.attrSet("src", uri)
        return renderer.image(tokens, idx, options, env)

    def table_open(renderer: Any, tokens: list, idx: int, options: Any, env: Any) -> str:
        return '<div class="table-wrap">\n' + renderer.renderToken(tokens, idx, options, env)

    def table_close(renderer: Any, tokens: list, idx: int, options: Any, env: Any) -> str:
        return renderer.renderToken(tokens, idx, options, env) + "</div>\n"

    def cell_open(renderer: Any, tokens: list, idx: int, options: Any, env: Any) -> str:
        # A short cell, or one word (a date, a model name), is not broken at its hyphens.
        inline = tokens[idx + 1] if idx + 1 < len(tokens) else None
        content = inline.content if inline is not None and inline.type == "inline" else ""
        if len(content) <= _NOWRAP_CHARS or (len(content) <= 40 and not re.search(r"\s", content)):
            tokens[idx].attrJoin("class", "nowrap")
        return renderer.renderToken(tokens, idx, options, env)

    def link_open(renderer: Any, tokens: list, idx: int, options: Any, env: Any) -> str:
        # A link to another Markdown page of the folder goes to its HTML page.
        href = str(tokens[idx].attrGet("href") or "")
        if href.endswith(".md") and "/" not in href and (root / href).is_file():
            tokens[idx].attrSet("href", _html_name(href))
        return renderer.renderToken(tokens, idx, options, env)

    md.add_render_rule("image", image)
    md.add_render_rule("link_open", link_open)
    md.add_render_rule("th_open", cell_open)
    md.add_render_rule("td_open", cell_open)
    md.add_render_rule("table_open", table_open)
    md.add_render_rule("table_close", table_close)

    tokens = md.parse(text)
    title = "llmsize report"
    for i, tok in enumerate(tokens[:-1]):
        if tok.type == "heading_open" and tok.tag == "h1":
            inline = tokens[i + 1]
            title = "".join(c.content for c in inline.children or []) or title
            break
    return md.renderer.render(tokens, md.options, {}), title


def _embedded_image(src: str, root: Path) -> str | None:
    """A ``data:`` URI of the image file ``src`` names inside ``root``, or None.

    None for a remote or absolute reference, a path leaving the report folder,
    a missing file or an unknown image type: nothing is ever linked.
    """
    parts = urlsplit(src)
    if parts.scheme or parts.netloc or not parts.path:
        return None
    rel = unquote(parts.path)
    if rel.startswith(("/", "\\")):
        return None
    path = (root / rel).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    mime = _IMAGE_TYPES.get(path.suffix.lower())
    if mime is None:
        return None
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:{mime};base64,{data}"


# --------------------------------------------------------------------------
# diagnostics.json


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _badge(state: bool | None) -> str:
    if state is None:
        return '<span class="badge na">N/A</span>'
    return (
        '<span class="badge pass">PASS</span>' if state else '<span class="badge fail">FAIL</span>'
    )


def _fmt(value: float | None, spec: str) -> str:
    if value is None:
        return "missing"
    if math.isnan(value):
        return "NaN"
    return format(value, spec)


def _check(value: float | None, ok: Any) -> bool | None:
    """PASS/FAIL of one check; a NaN fails, a missing value is N/A."""
    if value is None:
        return None
    if math.isnan(value):
        return False
    return bool(ok(value))


def _diagnostics_html(diag: dict[str, Any]) -> str:
    """The convergence checks of ``diagnostics.json`` with PASS/FAIL badges."""
    rhat = _number(diag.get("max_r_hat"))
    ess = _number(diag.get("min_ess_bulk"))
    div = _number(diag.get("divergences"))
    checks = [
        (
            f"max R-hat &le; {RHAT_MAX}",
            _fmt(rhat, ".4f"),
            diag.get("worst_r_hat"),
            _check(rhat, lambda v: v <= RHAT_MAX),
        ),
        (
            f"min bulk ESS &ge; {ESS_BULK_MIN}",
            _fmt(ess, ".0f"),
            diag.get("worst_ess"),
            _check(ess, lambda v: v >= ESS_BULK_MIN),
        ),
        (
            "zero divergent transitions",
            _fmt(div, ".0f"),
            None,
            _check(div, lambda v: v == 0),
        ),
    ]
    states = [c[3] for c in checks]
    if any(s is False for s in states):
        overall: bool | None = False
    elif all(s is True for s in states):
        overall = True
    else:
        overall = None
    cls = {True: "pass", False: "fail", None: "na"}[overall]

    rows = []
    for label, value, where, state in checks:
        where_html = f"<code>{escape(str(where))}</code>" if where else ""
        rows.append(
            f"<tr><td>{_badge(state)}</td><td>{label}</td><td>{escape(value)}</td>"
            f"<td>{where_html}</td></tr>"
        )
    all_rhat = _number(diag.get("all_max_r_hat"))
    all_ess = _number(diag.get("all_min_ess_bulk"))
    if all_rhat is not None or all_ess is not None:
        rows.append(
            '<tr><td><span class="badge na">INFO</span></td>'
            "<td>every sampled quantity (not checked)</td>"
            f"<td>R-hat {escape(_fmt(all_rhat, '.4f'))}, bulk ESS {escape(_fmt(all_ess, '.0f'))}"
            "</td><td></td></tr>"
        )

    parts = [
        f'<section class="diagnostics {cls}" id="diagnostics-box">',
        f"<h2>{_badge(overall)} Sampler diagnostics</h2>",
        '<div class="table-wrap"><table>',
        "<thead><tr><th>result</th><th>check (reported quantities)</th><th>value</th>"
        "<th>worst quantity</th></tr></thead>",
        "<tbody>",
        *rows,
        "</tbody></table></div>",
    ]
    failures = diag.get("failures")
    if isinstance(failures, list) and failures:
        items = "".join(f"<li>{escape(str(f))}</li>" for f in failures)
        parts.append(f'<ul class="failures">{items}</ul>')

    meta = _run_metadata(diag)
    if meta:
        items = "".join(f'<div><span class="k">{escape(k)}</span>{v}</div>' for k, v in meta)
        parts.append(f'<div class="meta">{items}</div>')
    parts.append("</section>")
    return "\n".join(parts)


def _run_metadata(diag: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, escaped HTML) pairs describing the run."""
    out: list[tuple[str, str]] = []

    def code(value: Any) -> str:
        return f"<code>{escape(str(value))}</code>"

    if diag.get("hypothesis_name") is not None:
        out.append(("hypothesis", code(diag["hypothesis_name"])))
    settings = diag.get("sampler_settings")
    if isinstance(settings, str):
        with contextlib.suppress(ValueError):
            settings = json.loads(settings)
    if isinstance(settings, dict):
        rest = dict(settings)
        name = rest.pop("sampler", None)
        chains, draws = rest.pop("chains", None), rest.pop("draws", None)
        words = [str(name)] if name is not None else []
        if chains is not None and draws is not None:
            words.append(f"{chains} chains x {draws} draws")
        text = ", ".join(words + [f"{k} {v}" for k, v in rest.items()])
        out.append(("sampler", escape(text)))
    elif settings is not None:
        out.append(("sampler", escape(str(settings))))
    elif diag.get("chains") is not None and diag.get("draws") is not None:
        out.append(("sampler", escape(f"{diag['chains']} chains x {diag['draws']} draws")))
    for key, label in [
        ("seed", "seed"),
        ("data_dir", "data"),
        ("data_sha256", "data sha256"),
        ("hypothesis_sha256", "hypothesis sha256"),
        ("llmsize_version", "llmsize"),
    ]:
        if diag.get(key) is not None:
            out.append((label, code(diag[key])))
    return out


# --------------------------------------------------------------------------
# hypothesis.json and data sources


def _hypothesis_html(path: Path, diag: dict[str, Any] | None) -> str:
    if not path.is_file():
        return ""
    raw = path.read_text(encoding="utf-8")
    try:
        hyp = json.loads(raw)
        pretty = json.dumps(hyp, indent=2, ensure_ascii=False)
    except ValueError:
        hyp, pretty = None, raw
    name = hyp.get("name") if isinstance(hyp, dict) else None
    if name is None and diag is not None:
        name = diag.get("hypothesis_name")
    label = f"Hypothesis <code>{escape(str(name))}</code>" if name is not None else "Hypothesis"
    return "\n".join(
        [
            '<h2 id="hypothesis">Hypothesis</h2>',
            '<p class="note">The effective hypothesis that produced this report '
            "(<code>hypothesis.json</code>: after <code>extends</code> and <code>--set</code>).</p>",
            "<details>",
            f"<summary>{label} ({sum(1 for _ in pretty.splitlines())} lines of JSON)</summary>",
            f"<pre><code>{escape(pretty)}</code></pre>",
            "</details>",
        ]
    )


def _linkify(text: str) -> str:
    """``text`` escaped, with each http(s) URL in it as a link."""
    out: list[str] = []
    pos = 0
    for m in _URL_RE.finditer(text):
        url = m.group(0)
        while url and (url[-1] in ".,;:!?" or (url[-1] == ")" and url.count(")") > url.count("("))):
            url = url[:-1]
        if len(url) <= len("https://"):
            continue
        start = m.start()
        out.append(escape(text[pos:start]))
        out.append(
            f'<a href="{escape(url, quote=True)}" rel="noopener noreferrer">{escape(url)}</a>'
        )
        pos = start + len(url)
    out.append(escape(text[pos:]))
    return "".join(out)


def _file_sources(path: Path) -> tuple[list[tuple[str, int]], int] | None:
    """Distinct ``source`` values of a CSV file in order of first use, with
    their row counts, and the number of rows; None without a source column."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "source" not in reader.fieldnames:
            return None
        counts: dict[str, int] = {}
        n = 0
        for row in reader:
            n += 1
            source = (row.get("source") or "").strip()
            if source:
                counts[source] = counts.get(source, 0) + 1
    return list(counts.items()), n


def _sources_html(data_dir: Path | None, diag: dict[str, Any] | None) -> str:
    named = diag.get("data_dir") if isinstance(diag, dict) else None
    parts = ['<h2 id="data-sources">Data sources</h2>']
    if data_dir is None or not data_dir.is_dir():
        where = f" (the run read <code>{escape(str(named))}</code>)" if named else ""
        parts.append(f'<p class="note">No data directory was given to list the sources{where}.</p>')
        return "\n".join(parts)
    parts.append(
        f'<p class="note">The distinct <code>source</code> entries of each CSV file in '
        f"<code>{escape(data_dir.name or str(data_dir))}</code>, in order of first use.</p>"
    )
    n_files = 0
    for csv_path in sorted(data_dir.glob("*.csv")):
        found = _file_sources(csv_path)
        if found is None:
            continue
        n_files += 1
        sources, n_rows = found
        items = "".join(
            f'<li>{_linkify(source)} <span class="count">({k} row{"s" if k != 1 else ""})</span></li>'
            for source, k in sources
        )
        parts += [
            "<details>",
            f"<summary>{escape(csv_path.name)} "
            f'<span class="count">{len(sources)} source{"s" if len(sources) != 1 else ""}, '
            f"{n_rows} row{'s' if n_rows != 1 else ''}</span></summary>",
            f'<ul class="sources">{items}</ul>' if items else '<p class="note">No sources.</p>',
            "</details>",
        ]
    if n_files == 0:
        parts.append('<p class="note">No CSV file with a <code>source</code> column.</p>')
    return "\n".join(parts)
