r"""Readable sections of the report: the comparison table, "Not run" grouped by cause, the
differences as short lines, and the parts' own text with repeated reasons shortened.

A missing data file blocks several datasets in several parts (the MAF archive: five datasets
in Table 1 and in the normalisation checks); each part names it with the same instructions
(``how_to_supply`` of the dataset's download status), so the report gives one line per missing
file: what it blocks and how to supply it.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

from tabulate import tabulate

from bnaf.report.parts import Comparison, fmt, text_items

__all__ = ["comparison_table", "difference_lines", "not_run_lines", "shorten_reasons"]

#: width of the report's prose lines (a laptop's editor or terminal shows them whole)
WIDTH = 99

_NAME_KEYS = ("dataset", "name", "model", "label", "energy", "setting", "what")


def comparison_table(rows: list[Comparison], reduced: bool) -> str:
    r"""Ours beside published; the distance in published stds only at the paper's budget.

    A reduced budget trains for a fraction of the paper's steps, so its distance from the
    published number measures the budget, not the method: it is left out.
    """
    head = ["part", "quantity", "ours", "published"]
    body = [[r.part, r.what, fmt(r.ours, r.ours_std), fmt(r.paper, r.paper_std)] for r in rows]
    if not reduced:
        head.append("(ours - published) / published std")
        for line, r in zip(body, rows):
            line.append(r.delta_text())
    else:
        for line, r in zip(body, rows):
            if r.ours is None:
                line[2] = "not run"
    return tabulate(body, head, tablefmt="github", disable_numparse=True)


def _missing_file(reason: str) -> str | None:
    # The download status names the file as "no copy of <name> (<checksum>)".
    found = re.search(r"no copy of (\S+)", reason)
    return found.group(1) if found else None


def _name(item: dict[str, Any]) -> str:
    return next((str(item[k]) for k in _NAME_KEYS if isinstance(item.get(k), str | int)), "?")


def not_run_lines(entries: list[tuple[str, Any]]) -> list[str]:
    r"""``(part, not_run item)`` pairs as Markdown list lines, one per cause.

    Items sharing instructions (``how_to_supply``) become one line naming the missing file,
    every part and item it blocks, and the instructions; other items keep a line each.
    """
    groups: dict[str, dict[str, Any]] = {}
    lines: list[str] = []
    for part, item in entries:
        how = item.get("how_to_supply") if isinstance(item, dict) else None
        if how:
            group = groups.setdefault(how, {"file": None, "blocks": {}})
            group["file"] = group["file"] or _missing_file(str(item.get("reason", "")))
            group["blocks"].setdefault(part, []).append(_name(item))
        elif isinstance(item, dict):
            reason = item.get("reason", "no reason given")
            lines.append(f"- {part}: `{_name(item)}` not run: {reason}.")
        else:
            lines += [f"- {part}: {t}" for t in text_items([item])]
    grouped = []
    for how, group in groups.items():
        blocks = "; ".join(f"{p}: {', '.join(names)}" for p, names in group["blocks"].items())
        what = f"`{group['file']}` is missing" if group["file"] else "Data is missing"
        grouped.append(f"- {what}; it blocks {blocks}. To supply it: {how}.")
    return grouped + lines


def shorten_reasons(markdown: str, items: list[Any]) -> str:
    r"""A part's own Markdown with the long reasons and instructions of its not-run items
    replaced by a pointer to the report's "Not run" section, where they are given once."""
    for item in items:
        if not isinstance(item, dict) or not item.get("how_to_supply"):
            continue
        how = str(item["how_to_supply"])
        for text in (f" To supply it: {how}", f". {how}", how):
            markdown = markdown.replace(text, "")
        reason = str(item.get("reason", ""))
        if len(reason) > 40:
            markdown = markdown.replace(reason, "data unavailable (see Not run)")
    return markdown


def difference_lines(differences: list[dict[str, str]]) -> list[str]:
    r"""The parts' differences from the paper, grouped by part, each wrapped to short lines."""
    lines: list[str] = []
    part = None
    for d in differences:
        if d["part"] != part:
            part = d["part"]
            lines += ["", f"**{part}**", ""]
        fields = [f"{k}: {d[k]}" for k in ("paper", "code") if d.get(k)]
        fields.append(f"this run: {d['ours']}" if fields else d["ours"])
        text = (f"{d['topic']} — " if d.get("topic") else "") + "; ".join(fields)
        lines += textwrap.wrap(
            text, WIDTH, initial_indent="- ", subsequent_indent="  ", break_on_hyphens=False
        )
    return lines[1:]
