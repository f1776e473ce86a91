r"""Packed vs separate toy baselines: model-steps per second of the training step.

Times the step of :func:`bnaf.toy.fit.fit` (forward, backward, clipping, optimiser, schedule)
for the paper's toy baselines, a 100-step Glow (Section 5.1, 3 targets) and K = 32 planar
flows (Section 5.2, 4 energies), two ways in one process, interleaved: the runs one after the
other (a pack of one each) and all of them as one pack (:mod:`bnaf.toy.pack`). Ratios within
one run are what to compare; absolute rates vary with the machine and its load.

    python benchmarks/toy_pack.py                  # 1 thread, as the pipeline's toy jobs
    python benchmarks/toy_pack.py --smoke          # tiny sizes (tests/test_benchmark.py)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bnaf.core.checkpoint import Checkpoint  # noqa: E402
from bnaf.toy.fit import Member, train_step  # noqa: E402
from bnaf.toy.optimise import PackOptimiser  # noqa: E402
from bnaf.toy.pack import Pack, build_model, pack_loss, stream_for  # noqa: E402
from bnaf.toy.params import load_toy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CASES = [("density", "glow", ["8gaussians", "2spirals", "checkerboard"]),
         ("energy", "planar", ["U1", "U2", "U3", "U4"])]  # fmt: skip


def _stepper(params, kind: str, model: str, targets: list[str], folder: Path):
    r"""One training step of these runs as one pack, as the loop takes it (no checkpoints)."""
    opt = getattr(params.density if kind == "density" else params.energy, model).optimiser
    members = [
        Member(
            build_model(params, kind, model),
            Checkpoint(folder / t, "bench", log=str),
            stream_for(params, kind, t, opt),
            opt,
        )  # fmt: skip
        for t in targets
    ]
    pack = Pack([m.model for m in members])
    optimiser = PackOptimiser(pack.params, opt, len(members), pack.stacked)
    loss_fn, state = pack_loss(params, kind, targets, members, pack), {"step": 0}

    def step() -> None:
        state["step"] += 1
        train_step(members, optimiser, loss_fn, state["step"], targets)

    return step


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default=str(ROOT / "params" / "paper" / "toy.yaml"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="tiny models, 2 steps, 1 repeat")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = load_toy(args.params)
    if args.smoke:
        params.density.glow.depth, params.energy.planar.flows = 2, 2
        args.steps, args.repeats = 2, 1
    folder = Path("/tmp/bnaf-toy-pack-bench")
    print(f"model-steps/s, {args.steps} steps x {args.repeats} repeats (median), "
          f"threads={args.threads}, torch {torch.__version__}")  # fmt: skip
    print(f"{'model':8} {'runs':>4} {'separate':>9} {'packed':>9} {'packed/separate':>16}")
    for kind, model, targets in CASES:
        alone = [_stepper(params, kind, model, [t], folder) for t in targets]
        pack = _stepper(params, kind, model, targets, folder)
        for f in [*alone, pack]:
            f()  # warm-up: actnorm initialisation, first allocations
        times: dict[str, list[float]] = {"separate": [], "packed": []}
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for f in alone:
                for _ in range(args.steps):
                    f()
            times["separate"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                pack()
            times["packed"].append(time.perf_counter() - t0)
        n = len(targets) * args.steps
        sep, pk = (n / statistics.median(times[k]) for k in ("separate", "packed"))
        print(f"{model:8} {len(targets):>4} {sep:9.1f} {pk:9.1f} {pk / sep:16.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
