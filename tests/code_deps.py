"""The bnaf modules a stage imports, directly or not (static: every ``import bnaf...`` in the
module's source, function-level imports included), as repository paths."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _file(module: str) -> Path | None:
    base = ROOT / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("bnaf")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bnaf"):
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}  # submodules by name
    return out


def closure(*modules: str) -> list[str]:
    """Repository paths of ``modules`` and every bnaf module they import, with the
    ``__init__.py`` of each package on the way (Python runs those too)."""
    seen: set[Path] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            path = _file(".".join(parts[:i]))
            if path is not None and path not in seen:
                seen.add(path)
                todo += list(_imports(path))
    return sorted(str(p.relative_to(ROOT)) for p in seen)
