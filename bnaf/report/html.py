r"""HTML renderings of the report and its parts, for ``snakemake --report``.

Snakemake's HTML report shows HTML and images inline but offers Markdown only as a download,
so the report stage renders each Markdown file to HTML: ``reports/html/report.html`` (the whole
report, a page of its own), ``reports/html/<part>.html`` (each part's table) and
``reports/html/landing.html``, the report's text as a fragment that the workflow description
(``workflow/report/workflow.rst``) includes, so it is the report's landing page. Figures are
embedded as ``data:`` URIs: every page is self-contained and loads nothing.
"""

from __future__ import annotations

import base64
import html
import mimetypes
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

__all__ = ["STYLE", "fragment", "landing", "page", "render"]

#: one style for the pages and the landing fragment: tables with rules, figures within width.
STYLE = """
.bnaf-report { font-family: system-ui, sans-serif; font-size: 14px; line-height: 1.45;
  max-width: 110ch; }
.bnaf-report table { border-collapse: collapse; margin: 0.6em 0; font-size: 13px; }
.bnaf-report th, .bnaf-report td { border: 1px solid #bbb; padding: 2px 7px;
  text-align: left; vertical-align: top; }
.bnaf-report th { background: #eee; }
.bnaf-report img { max-width: 100%; height: auto; }
.bnaf-report code { background: #f4f4f4; padding: 0 2px; }
.bnaf-report blockquote { border-left: 4px solid #c33; margin: 0.5em 0; padding: 0 0.8em; }
"""

#: Snakemake's landing page puts the workflow description in a narrow column (Tailwind's
#: max-w-lg) beside the rule graph, centred vertically in a scrolling box; the report's tables
#: need the width, and a centred text taller than the window would lose its top.
_LANDING_STYLE = (
    ".prose.max-w-lg:has(.bnaf-report) { max-width: none; }\n"
    "div.items-center:has(.bnaf-report) { align-items: flex-start; }\n"
    "div.items-start:has(> div > .prose .bnaf-report) { flex-direction: column; }"
)


def _parser() -> MarkdownIt:
    # CommonMark plus GitHub tables (what tabulate's "github" format writes); raw HTML in the
    # parts' Markdown is escaped, not passed through.
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def _data_uri(path: Path) -> str:
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def _embed_images(tokens: list[Token], base: Path) -> list[str]:
    """Replace each local image's ``src`` by a data URI; return the images not found."""
    missing = []
    for token in tokens:
        for child in token.children or []:
            if child.type != "image":
                continue
            src = str(child.attrs.get("src", ""))
            if ":" in src.split("/")[0]:  # a URL (data:, https:) stays as it is
                continue
            path = base / src
            if path.is_file():
                child.attrs["src"] = _data_uri(path)
            else:
                missing.append(src)
    return missing


def render(markdown: str, base: Path) -> str:
    r"""Markdown as HTML, local images (relative to ``base``) embedded.

    Arguments:
        markdown: CommonMark with GitHub tables.
        base: folder the image paths are relative to (the Markdown file's folder).

    Returns:
        The HTML body. An image whose file is absent keeps its path and is named in a note.
    """
    md = _parser()
    tokens = md.parse(markdown)
    missing = _embed_images(tokens, base)
    body = md.renderer.render(tokens, md.options, {})
    for src in missing:
        body += f"<p><em>Figure not found: {html.escape(src)}</em></p>\n"
    return body


def fragment(body: str) -> str:
    """The body in the report's styled container (no document around it)."""
    return f'<style>{STYLE}</style>\n<div class="bnaf-report">\n{body}</div>\n'


def landing(body: str) -> str:
    """The fragment for Snakemake's landing page: the body, with the column widened."""
    return f"<style>{_LANDING_STYLE}</style>\n" + fragment(body)


def page(title: str, body: str) -> str:
    """A complete, self-contained HTML document."""
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n</head>\n<body>\n"
        + fragment(body)
        + "</body>\n</html>\n"
    )
