r"""The one command-line entry: ``python -m bnaf <family> <stage> ...`` or ``python -m bnaf
<stage>``.

A stage is named the same way everywhere: ``python -m bnaf uci train`` is the module
``bnaf/uci/train.py``, the Snakemake rule ``uci_train`` and part of the DVC stage ``uci``
(README, "Stages"). Each stage module defines ``add_arguments(parser)`` and ``run(args)``;
modules are imported lazily, so ``python -m bnaf uci count`` does not pay for matplotlib or h5py.
Any :class:`~bnaf.core.errors.BnafError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from bnaf.core.errors import BnafError

__all__ = ["STAGES", "main", "module_of", "rule_of"]

#: "family stage" (or a lone stage) -> one-line help; the module is bnaf.<family>.<stage>
STAGES: dict[str, str] = {
    "data download": "fetch and verify one dataset into data/raw (or say why not)",
    "data prepare": "turn one dataset's raw files into data/prepared/<name>.h5",
    "data inventory": "list the supplied files the downloads depend on (DVC's data trigger)",
    "toy train": "train and evaluate one 2-D toy model (Sections 5.1-5.2)",
    "toy table": "the toy experiments' numbers as Markdown + JSON",
    "toy figure": "Figure 2 or 3 (PNG) from the toy runs' grids",
    "uci train": "train one B-NAF density estimator (Section 5.3)",
    "uci select": "pick a dataset's grid config by validation LL (Section 5.3)",
    "uci table": "Table 1 (Markdown + JSON + CSV) from the selections",
    "uci count": "parameter counts of B-NAF against NAF-DDSF (Table 1, bottom rows)",
    "vae train": "train and evaluate one VAE with a B-NAF posterior (Section 5.4)",
    "vae table": "Table 2 (Markdown + JSON) from the VAE runs",
    "vae count": "amortised B-NAF vs Sylvester/IAF size counts (Section 5.4)",
    "normalisation": "do trained flows integrate to one? (inverse, Monte Carlo)",
    "samples": "samples of the Figure 2 B-NAF models through the inverse (PNG)",
    "report": "assemble reports/report.md from the parts' JSON twins",
    "gpu": "run a command pinned to a free local GPU slot (CUDA_VISIBLE_DEVICES)",
    "schema": "write the Snakemake config schema from the params dataclasses",
}

#: lone stages that live in a shared package rather than a family of their own
_HOME = {"normalisation": "report", "samples": "report", "report": "report", "gpu": "core"}


def module_of(stage: str) -> str:
    r"""``"uci train"`` -> ``"bnaf.uci.train"``; ``"report"`` -> ``"bnaf.report.report"``."""
    words = stage.split()
    if len(words) == 2:
        return "bnaf." + ".".join(words)
    return f"bnaf.{_HOME[stage]}.{stage}" if stage in _HOME else f"bnaf.{stage}"


def rule_of(stage: str) -> str:
    r"""The Snakemake rule of a stage: ``"uci train"`` -> ``"uci_train"``."""
    return stage.replace(" ", "_")


def _families() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for stage in STAGES:
        if " " in stage:
            family, verb = stage.split()
            out.setdefault(family, []).append(verb)
    return out


def _overview() -> argparse.ArgumentParser:
    lines = []
    for stage, help_ in STAGES.items():
        lines.append(f"  {stage:15s} {help_}")
    return argparse.ArgumentParser(
        prog="python -m bnaf",
        usage="python -m bnaf <family> <stage> [options] | python -m bnaf <stage> [options]",
        description="Block Neural Autoregressive Flow: the reproduction pipeline's stages.",
        epilog="stages:\n" + "\n".join(lines) + "\nSee `python -m bnaf <stage> --help`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    families = _families()
    if argv and argv[0] in families and len(argv) > 1 and f"{argv[0]} {argv[1]}" in STAGES:
        stage, rest = f"{argv[0]} {argv[1]}", argv[2:]
    elif argv and argv[0] in STAGES:
        stage, rest = argv[0], argv[1:]
    else:
        parser = _overview()
        if not argv or argv[0] in ("-h", "--help"):
            parser.print_help()
            return 0 if argv else 2
        known = argv[0]
        if known in families:
            known = f"{known} {{{','.join(families[known])}}}"
        parser.error(f"unknown stage {' '.join(argv[:2])!r}; expected e.g. {known!r}")
    # Build only the parser that is asked for, so one stage's imports never slow another.
    module = importlib.import_module(module_of(stage))
    parser = argparse.ArgumentParser(prog=f"python -m bnaf {stage}", description=STAGES[stage])
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except BnafError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a read-only folder, a vanished file: name the path
        where = exc.filename or "?"
        print(f"error: {where}: {exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
