"""A tiny toy params file (same keys as params/<budget>/toy.yaml) for fast tests."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def tiny_toy_params(path: Path, iterations: int = 40, **experiment: dict) -> Path:
    """Write ``path`` (a toy.yaml) from params/quick/toy.yaml with tiny models and budgets."""
    data = yaml.safe_load((ROOT / "params" / "quick" / "toy.yaml").read_text())
    toy = data["toy"]
    toy.update(budget="tiny", log_every=10, resources={"mem_mb": 500, "runtime": 5, "gpu": 0})
    d, e = toy["density"], toy["energy"]
    d.update(targets=["8gaussians", "checkerboard"], test_samples=2000, grid_step=0.1)
    e.update(targets=["U1", "U3"], kl_samples=2000, grid_step=0.2)
    d["bnaf"]["flow"]["hidden_factor"] = e["bnaf"]["flow"]["hidden_factor"] = 5
    d["glow"].update(depth=4, hidden=16)
    d["glow"]["optimiser"]["lr"] = 1e-2  # a tiny Glow needs a larger step to move in 60 steps
    e["planar"]["flows"] = 4
    for model in (d["bnaf"], d["glow"], e["bnaf"], e["planar"]):
        model["optimiser"].update(iterations=iterations, batch_size=64)
    for key, value in experiment.items():
        toy[key].update(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
