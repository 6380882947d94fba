"""The Jinja2 templates of every page llmsize writes (``llmsize/outputs/templates``).

Markdown templates (``*.md.j2``) are rendered as they are, escaped where they become
HTML; HTML templates (``*.html.j2``) escape every value they are given unless it is
marked safe (:class:`markupsafe.Markup`); the stylesheet (``*.css``) is included as is.
Sentences more than one page uses are macros of ``prose.md.j2`` (:func:`prose`); sizes
in billions are formatted by the ``billions`` filter (:func:`llmsize.outputs.tables.billions`).
"""

from __future__ import annotations

import functools

import jinja2

from llmsize.outputs.tables import billions


@functools.cache
def environment() -> jinja2.Environment:
    """The environment of the package's templates, strict about undefined names."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("llmsize.outputs", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
    )
    env.filters["billions"] = billions
    return env


def render(name: str, **context) -> str:
    """Template ``name`` rendered with ``context``."""
    return environment().get_template(name).render(**context)


def prose(name: str, *args, **kwargs) -> str:
    """The sentence that macro ``name`` of ``templates/prose.md.j2`` makes of its
    arguments (the pages' shared sentences, kept with the other templates).
    """
    return str(getattr(environment().get_template("prose.md.j2").module, name)(*args, **kwargs))
