r"""The one command-line entry: ``python -m bnaf <stage> ...``.

Each stage lives in its own module, which defines ``add_arguments(parser)`` and ``run(args)``;
the registry below maps the stage's name (shared with the Snakemake rule and the DVC stage)
to that module. Modules are imported lazily so ``python -m bnaf count`` does not pay for
matplotlib or h5py.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from bnaf.errors import BnafError

__all__ = ["COMMANDS", "main"]

#: stage name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "download": ("bnaf.download", "fetch and verify one dataset into data/raw (or say why not)"),
    "prepare": ("bnaf.prepare", "turn one dataset's raw files into data/prepared/<name>.h5"),
    "count": ("bnaf.count", "parameter counts of B-NAF against NAF-DDSF (Table 1, bottom rows)"),
    "train": ("bnaf.train", "train one B-NAF density estimator (Section 5.3)"),
    "select": ("bnaf.select", "pick a dataset's grid config by validation LL (Section 5.3)"),
    "vae": ("bnaf.vae.train", "train and evaluate one VAE with a B-NAF posterior (Sec. 5.4)"),
    "count-vae": ("bnaf.vae.count", "amortised B-NAF vs Sylvester/IAF size counts (Sec. 5.4)"),
    "toy": ("bnaf.toy", "train and evaluate one 2-D toy model (Sections 5.1-5.2)"),
    "normalisation": ("bnaf.normalisation", "do trained flows integrate to one? (inverse, MC)"),
    "table": ("bnaf.table", "build a table (Markdown + JSON twin): toy, table1, table2"),
    "figure": ("bnaf.figure", "draw a figure (PNG): figure2, figure3"),
    "gpu": ("bnaf.gpu", "run a command pinned to a free local GPU slot (CUDA_VISIBLE_DEVICES)"),
    "report": ("bnaf.report", "assemble reports/report.md from the parts' JSON twins"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bnaf",
        description="Block Neural Autoregressive Flow: the reproduction pipeline's stages.",
    )
    sub = parser.add_subparsers(dest="command", metavar="STAGE", required=True)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Build only the sub-parser that is asked for, so one stage's imports never slow another.
    if argv and argv[0] in COMMANDS:
        module_name, help_ = COMMANDS[argv[0]]
        parser = argparse.ArgumentParser(prog=f"python -m bnaf {argv[0]}", description=help_)
        module = importlib.import_module(module_name)
        module.add_arguments(parser)
        args = parser.parse_args(argv[1:])
    else:
        parser = build_parser()
        args = parser.parse_args(argv)
        module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except BnafError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
