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
import re
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from markdown_it import MarkdownIt
from markupsafe import Markup

from llmsize.outputs.io import write_text_atomic
from llmsize.outputs.summary import ESS_BULK_MIN, RHAT_MAX
from llmsize.outputs.templating import render
from llmsize.version import __version__

__all__ = ["render_html", "write_html", "write_pages"]

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


#: The README's section that the diagnostics box opens.
_DIAGNOSTICS_HEADING = "<h2>Diagnostics</h2>"


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
    # The answer comes first: the run's diagnostics box opens the README's
    # "Diagnostics" section, below the results (at the end when it has none).
    # A family page carries its own models' diagnostics in its text instead.
    parts: list[str] = [Markup(body)]
    if diagnostics is not None and page == "README.md":
        head, sep, rest = body.partition(_DIAGNOSTICS_HEADING)
        parts = (
            [Markup(head), "diagnostics", Markup(sep + rest)] if sep else [*parts, "diagnostics"]
        )
    return render(
        "page.html.j2",
        csp=_CSP,
        version=__version__,
        title=title,
        body=parts,
        diagnostics=_diagnostics(diagnostics) if diagnostics is not None else None,
        hypothesis=_hypothesis(report_dir / "hypothesis.json", diagnostics),
        sources=_sources(Path(data_dir) if data_dir is not None else None, diagnostics),
        # No folder name here: a report is written in a temporary folder, and the
        # page must be the same bytes for the same run.
        page=page,
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
    write_text_atomic(dest, render_html(report_dir, data_dir, page=page))
    return dest


def write_pages(report_dir: Path | str, *, data_dir: Path | str | None = None) -> list[Path]:
    """Write ``index.html`` from ``README.md`` and one HTML page for each other
    Markdown page of the folder (the family pages), and return their paths.
    """
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


def _diagnostics(diag: dict[str, Any]) -> dict[str, Any]:
    """The convergence checks of ``diagnostics.json``, each PASS (True), FAIL (False)
    or N/A (None), for the page's diagnostics box.
    """
    rhat = _number(diag.get("max_r_hat"))
    ess = _number(diag.get("min_ess_bulk"))
    div = _number(diag.get("divergences"))
    checks = [
        {
            "label": f"max R-hat \u2264 {RHAT_MAX}",
            "value": _fmt(rhat, ".4f"),
            "where": diag.get("worst_r_hat"),
            "state": _check(rhat, lambda v: v <= RHAT_MAX),
        },
        {
            "label": f"min bulk ESS \u2265 {ESS_BULK_MIN}",
            "value": _fmt(ess, ".0f"),
            "where": diag.get("worst_ess"),
            "state": _check(ess, lambda v: v >= ESS_BULK_MIN),
        },
        {
            "label": "zero divergent transitions",
            "value": _fmt(div, ".0f"),
            "where": None,
            "state": _check(div, lambda v: v == 0),
        },
    ]
    states = [c["state"] for c in checks]
    if any(s is False for s in states):
        overall: bool | None = False
    elif all(s is True for s in states):
        overall = True
    else:
        overall = None
    all_rhat = _number(diag.get("all_max_r_hat"))
    all_ess = _number(diag.get("all_min_ess_bulk"))
    failures = diag.get("failures")
    return {
        "cls": {True: "pass", False: "fail", None: "na"}[overall],
        "overall": overall,
        "checks": checks,
        "all_quantities": (
            f"R-hat {_fmt(all_rhat, '.4f')}, bulk ESS {_fmt(all_ess, '.0f')}"
            if all_rhat is not None or all_ess is not None
            else None
        ),
        "failures": [str(f) for f in failures] if isinstance(failures, list) else [],
        "meta": _run_metadata(diag),
    }


def _run_metadata(diag: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(label, text, shown as code) triples describing the run."""
    out: list[tuple[str, str, bool]] = []

    def code(value: Any) -> tuple[str, bool]:
        return str(value), True

    if diag.get("hypothesis_name") is not None:
        out.append(("hypothesis", *code(diag["hypothesis_name"])))
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
        out.append(("sampler", text, False))
    elif settings is not None:
        out.append(("sampler", str(settings), False))
    elif diag.get("chains") is not None and diag.get("draws") is not None:
        out.append(("sampler", f"{diag['chains']} chains x {diag['draws']} draws", False))
    for key, label in [
        ("seed", "seed"),
        ("data_dir", "data"),
        ("data_sha256", "data sha256"),
        ("hypothesis_sha256", "hypothesis sha256"),
        ("llmsize_version", "llmsize"),
    ]:
        if diag.get(key) is not None:
            out.append((label, *code(diag[key])))
    return out


# --------------------------------------------------------------------------
# hypothesis.json and data sources


def _hypothesis(path: Path, diag: dict[str, Any] | None) -> dict[str, Any] | None:
    """The effective hypothesis as pretty JSON, with its name, or None without the file."""
    if not path.is_file():
        return None
    raw = path.read_text(encoding="utf-8")
    try:
        hyp = json.loads(raw)
        pretty = json.dumps(hyp, indent=2, ensure_ascii=False)
    except ValueError:
        hyp, pretty = None, raw
    name = hyp.get("name") if isinstance(hyp, dict) else None
    if name is None and diag is not None:
        name = diag.get("hypothesis_name")
    return {
        "name": str(name) if name is not None else None,
        "lines": sum(1 for _ in pretty.splitlines()),
        "text": pretty,
    }


def _linkify(text: str) -> Markup:
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
    return Markup("".join(out))


def _file_sources(path: Path) -> tuple[list[tuple[str, int]], int] | None:
    """Distinct ``source`` values of a CSV file in order of first use, with
    their row counts, and the number of rows; None without a source column.
    """
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


def _sources(data_dir: Path | None, diag: dict[str, Any] | None) -> dict[str, Any]:
    """The distinct sources of each CSV file of ``data_dir`` (each a linked, escaped
    text and its row count), or ``files`` None when no data folder was given.
    """
    named = diag.get("data_dir") if isinstance(diag, dict) else None
    if data_dir is None or not data_dir.is_dir():
        return {"named": named, "files": None}
    files = []
    for csv_path in sorted(data_dir.glob("*.csv")):
        found = _file_sources(csv_path)
        if found is None:
            continue
        sources, n_rows = found
        files.append(
            {
                "name": csv_path.name,
                "rows": n_rows,
                "sources": [(_linkify(source), k) for source, k in sources],
            }
        )
    return {"named": named, "dir_name": data_dir.name or str(data_dir), "files": files}
