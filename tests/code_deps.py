"""The bnaf modules a stage imports, directly or not, as repository paths (the same closure the
checkpoint fingerprints use: :func:`bnaf.core.checkpoint.code_closure`).

``python tests/code_deps.py`` rewrites the ``bnaf/`` deps of each part's stage in ``dvc.yaml``
to that closure (other deps, such as the workflow files, are kept), as
``tests/test_layout.py`` asks when a stage misses code it imports.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bnaf.core.checkpoint import code_closure

ROOT = Path(__file__).resolve().parents[1]


def closure(*modules: str) -> list[str]:
    return [str(p.resolve().relative_to(ROOT)) for p in code_closure(*modules)]


def stage_deps(stage: str, stages: tuple[str, ...]) -> list[str]:
    """The ``bnaf/`` deps of the DVC stage ``stage`` running the CLI ``stages``: the data
    stages depend on all of ``bnaf/data`` (its registry imports datasets by name)."""
    from bnaf.cli import module_of

    files = closure("bnaf.cli", *(module_of(s) for s in stages))
    if stage in ("data", "vae"):
        files = [f for f in files if not f.startswith("bnaf/data/")] + ["bnaf/data"]
    return sorted(files)


def rewrite(path: Path, dvc_stages: dict[str, tuple[str, ...]]) -> None:
    lines = path.read_text().split("\n")
    out: list[str] = []
    stage, i = None, 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("  ") and not line.startswith("   ") and line.rstrip().endswith(":"):
            stage = line.strip()[:-1]
        out.append(line)
        i += 1
        if line == "    deps:" and stage in dvc_stages:
            old = []
            while i < len(lines) and lines[i].startswith("      - "):
                old.append(lines[i])
                i += 1
            workflow = [x for x in old if "workflow/" in x or "Snakefile" in x]
            other = [x for x in old if x not in workflow and not x.strip().startswith("- bnaf")]
            code = [f"      - {f}" for f in stage_deps(stage, dvc_stages[stage])]
            out += other + code + workflow
    path.write_text("\n".join(out))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "tests"))
    from test_layout import DVC_STAGES

    rewrite(ROOT / "dvc.yaml", DVC_STAGES)
    print("rewrote the bnaf/ deps of dvc.yaml")
