r"""Stage ``figure``: ``python -m bnaf figure NAME ...`` draws one figure (PNG)."""

from bnaf.dispatch import Dispatcher

__all__ = ["FIGURES", "add_arguments", "run"]

#: product name -> one-line description; the module is ``bnaf.figures.<name>``.
FIGURES: dict[str, str] = {
    "figure2": "Figure 2: density estimation on 2-D toy data (Data | Glow | B-NAF)",
    "figure3": "Figure 3: density matching of energies U1-U4 (Target | Planar | B-NAF)",
    "samples": "samples of the Figure 2 B-NAF models beside their densities (inverse)",
}

_dispatch = Dispatcher("bnaf.figures", FIGURES)
add_arguments = _dispatch.add_arguments
run = _dispatch.run
