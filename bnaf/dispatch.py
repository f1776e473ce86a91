r"""Stages with named products (``table toy``, ``figure figure2``): a two-level registry.

``python -m bnaf table NAME ...`` imports only ``bnaf.tables.NAME`` and hands it the rest of the
command line, so each product lives in its own module with its own options.
"""

from __future__ import annotations

import argparse
import importlib

__all__ = ["Dispatcher"]


class Dispatcher:
    """A stage whose first argument names a product module in ``package``."""

    def __init__(self, package: str, products: dict[str, str]):
        self.package = package
        self.products = products

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        lines = "\n".join(f"  {k:10s} {v}" for k, v in self.products.items())
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.epilog = f"products:\n{lines}\nSee `... NAME --help` for a product's options."
        parser.add_argument("product", choices=sorted(self.products), metavar="NAME")
        parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def run(self, args: argparse.Namespace) -> int:
        module = importlib.import_module(f"{self.package}.{args.product}")
        parser = argparse.ArgumentParser(
            prog=f"python -m bnaf {self.package.rsplit('.', 1)[-1].rstrip('s')} {args.product}",
            description=self.products[args.product],
        )
        module.add_arguments(parser)
        return int(module.run(parser.parse_args(args.rest)) or 0)
