r"""The report's learning-curves figure (``reports/curves.png``): training and validation per
epoch of the selected runs of every part, with the epochs where the learning rate changed.

The runs are those the parts' JSON twins report: Table 1's selected config of each dataset and
Table 2's rows (each at its first seed), and every toy run (whose curve is the training loss
per logged iteration: the toy models see fresh samples every step and have no validation
split). Each run's curves are read from its ``history.csv``. A part that did not run, or a run
without a history, is named in a note under the figure and left out; a malformed history (or
one without the part's columns) is an error naming the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bnaf.core.errors import BnafError
from bnaf.core.history import read_history
from bnaf.report.params import PartSpec

__all__ = ["CAPTION", "Panel", "draw", "lr_changes", "selected_runs", "write"]

CAPTION = (
    "Training and validation per epoch (per logged iteration for the toy models, which have "
    "no validation split) of the runs reported: Table 1's selected config per dataset and "
    "Table 2's rows, at their first seed, and every toy run. Dotted lines: the learning rate "
    "changed (a plateau decay)."
)


@dataclass(frozen=True)
class Panel:
    r"""One run's panel: its title, its folder (relative to the workdir), the x column and the
    curves as ``(label, column, sign)`` (``sign`` -1 turns a log-likelihood into an NLL)."""

    title: str
    folder: str
    x: str
    curves: tuple[tuple[str, str, float], ...]
    ylabel: str


_UCI = (("train", "train_nll", 1.0), ("validation", "validation_ll", -1.0))
_VAE = (("train (KL warm-up)", "train", 1.0), ("validation", "valid", 1.0))
_TOY = (("train", "loss", 1.0),)
_TOY_LABEL = {"density": "NLL (nats)", "energy": "KL(q||p) - log Z (nats)"}


def _toy(data: dict[str, Any]) -> list[Panel]:
    rows = [("density", r, r["dataset"]) for r in data.get("density") or []]
    rows += [("energy", r, r["energy"]) for r in data.get("energy") or []]
    return [
        Panel(f"{target} {r['model']}", r["run"], "iteration", _TOY, _TOY_LABEL[kind])
        for kind, r, target in rows
    ]


def _table1(data: dict[str, Any]) -> list[Panel]:
    panels = []
    for r in data.get("results") or []:
        run = r["runs"][0]  # the selected config's first seed
        title = f"{r['dataset']} {r['selected_config']} {Path(run).name}"
        panels.append(Panel(title, run, "epoch", _UCI, "NLL (nats)"))
    return panels


def _table2(data: dict[str, Any]) -> list[Panel]:
    return [
        Panel(f"{d} {config} {Path(folders[0]).name}", folders[0], "epoch", _VAE, "-ELBO (nats)")
        for config, datasets in data["runs"].items()
        for d, folders in datasets.items()
    ]


#: part name -> the panels of the runs its JSON twin reports
READERS = {"toy": _toy, "table1": _table1, "table2": _table2}


def selected_runs(
    specs: list[PartSpec], parts: dict[str, dict[str, Any]]
) -> tuple[list[Panel], list[str]]:
    r"""The panels of the runs the parts report, in the params' order of parts, and a note for
    each part with runs that did not run or does not name its runs."""
    panels, notes = [], []
    for spec in specs:
        reader = READERS.get(spec.name)
        if reader is None:
            continue
        if spec.name not in parts:
            notes.append(f"{spec.title}: not run")
            continue
        try:
            found = reader(parts[spec.name])
        except (KeyError, IndexError, TypeError):
            notes.append(f"{spec.title}: {spec.json} does not name its runs (rebuild it)")
            continue
        panels += found
        if not found:
            notes.append(f"{spec.title}: no run reported")
    return panels, notes


def lr_changes(history: dict[str, list[float]], x: str) -> list[float]:
    r"""The ``x`` of each row whose learning rate differs from the row before: the first epoch
    (or logged iteration) trained at a new rate; none without an ``lr`` column."""
    lr, xs = history.get("lr"), history[x]
    if lr is None:
        return []
    return [xs[i] for i in range(1, len(lr)) if lr[i] != lr[i - 1]]


def draw(panels: list[tuple[Panel, dict[str, list[float]]]], out: str | Path) -> Any:
    r"""Draw one panel per run and save a PNG atomically; returns the figure (closed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from bnaf.core.io import atomic_path

    cols = max(1, min(4, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    if not panels:
        axes[0][0].text(0.5, 0.5, "no run's history to draw", ha="center", va="center")
    for ax, (panel, history) in zip(axes.flat, panels):
        for label, column, sign in panel.curves:
            ax.plot(history[panel.x], [sign * v for v in history[column]], label=label, lw=1)
        for i, at in enumerate(lr_changes(history, panel.x)):
            ax.axvline(at, ls=":", color="grey", lw=1, gid="lr-change",
                       label="lr decay" if i == 0 else None)  # fmt: skip
        ax.set_title(panel.title, fontsize=9)
        ax.set_xlabel(panel.x, fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
        ax.set_ylabel(panel.ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return fig


def write(
    specs: list[PartSpec], parts: dict[str, dict[str, Any]], workdir: Path, out: Path
) -> dict[str, Any]:
    r"""Draw the figure of the parts' runs into ``out``; returns what was drawn and the notes
    on what was not (``{"figure", "runs", "not_drawn"}``)."""
    panels, notes = selected_runs(specs, parts)
    drawn = []
    for panel in panels:
        if not panel.folder:
            notes.append(f"{panel.title}: its table names no run folder")
            continue
        path = workdir / panel.folder / "history.csv"
        if not path.is_file():
            notes.append(f"{panel.folder}: no history.csv (a run finished before it was written)")
            continue
        history = read_history(path)
        absent = [c for c in (panel.x, *(c for _, c, _ in panel.curves)) if c not in history]
        if absent:
            raise BnafError(f"{path}: no column {', '.join(absent)} in this history")
        drawn.append((panel, history))
    draw(drawn, out)
    return {"figure": str(out), "runs": [p.folder for p, _ in drawn], "not_drawn": notes}
