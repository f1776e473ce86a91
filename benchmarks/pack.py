r"""Packed seeds against separate runs: model-steps per second, side by side in one process.

A whole training step of the paper's recipe (``params/paper/uci.yaml``: loss, backward, clipping,
AMSGrad, Polyak update) for ``M`` seeds of one grid point, taken either as ``M`` separate
:meth:`Trainer.step` calls (what ``M`` separate jobs do, one after the other, at the same
thread count) or as one :meth:`PackedTrainer.step` (``bnaf/uci/pack.py``). Shapes as in
``train_step.py`` (POWER-, MINIBOONE- and BSDS300-like, batch 200). The two are timed
alternately, best of ``--repeats``, and reported as a ratio: machines differ, ratios do not.

Usage::

    python benchmarks/pack.py [--device cpu|cuda] [--threads 1] [--members 3] [--json out.json]
    python benchmarks/pack.py --compile    # both sides with uci.train.compile: true
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as train_step.py, before torch starts

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from train_step import CONFIGS, TINY  # noqa: E402

from bnaf.uci.pack import PackedTrainer  # noqa: E402
from bnaf.uci.params import load_uci  # noqa: E402
from bnaf.uci.trainer import Trainer  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _trainers(
    name: str, dims: tuple, members: int, device: torch.device, compile: bool = False
) -> list[Trainer]:
    d, flows, layers, k = dims
    p = load_uci(ROOT / "params" / "paper" / "uci.yaml")
    p = dataclasses.replace(p, train=dataclasses.replace(p.train, compile=compile))
    flow = dataclasses.replace(p.flow, flows=flows, layers=layers, hidden_factor=k)
    gen = torch.Generator().manual_seed(0)
    train = torch.randn(2000, d, generator=gen).to(device)
    val = torch.randn(200, d, generator=gen).to(device)
    return [Trainer(train, val, flow, s, p.train, device, log=lambda _: None)
            for s in range(members)]  # fmt: skip


def measure(
    name: str,
    dims: tuple,
    members: int,
    device: torch.device,
    steps: int,
    repeats: int,
    compile: bool = False,
) -> dict:
    r"""Model-steps per second of ``members`` separate trainers and of their pack (both with
    ``uci.train.compile`` as ``compile`` says; the warm-up steps compile)."""
    separate = _trainers(name, dims, members, device, compile)
    packed = _trainers(name, dims, members, device, compile)
    pack = PackedTrainer(packed)
    gen = torch.Generator().manual_seed(1)
    batches = torch.randn(4, members, 200, dims[0], generator=gen).to(device)

    def run_separate(i: int) -> None:
        for m, t in enumerate(separate):
            t.step(batches[i % 4, m])

    def run_packed(i: int) -> None:
        pack.step(packed, batches[i % 4])

    best = {"separate": math.inf, "packed": math.inf}
    for fn in (run_separate, run_packed):
        fn(0), fn(1)  # warm-up
    for _ in range(repeats):
        for key, fn in (("separate", run_separate), ("packed", run_packed)):
            _sync(device)
            t0 = time.perf_counter()
            for i in range(steps):
                fn(i)
            _sync(device)
            best[key] = min(best[key], time.perf_counter() - t0)
    rate = {k: members * steps / v for k, v in best.items()}
    d, _, layers, k = dims
    return {
        "model": name, "d": d, "L": layers, "H": k * d, "members": members, "compile": compile,
        "separate_model_steps_per_s": rate["separate"],
        "packed_model_steps_per_s": rate["packed"],
        "packed/separate": rate["packed"] / rate["separate"],
    }  # fmt: skip


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    shapes = TINY if args.tiny else {k: CONFIGS[k] for k in args.configs}
    rows = [measure(n, dims, args.members, device, args.steps, args.repeats, args.compile)
            for n, dims in shapes.items()]  # fmt: skip
    return {"device": str(device), "threads": args.threads, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--tiny", action="store_true", help="a tiny shape (a test of the script)")
    parser.add_argument("--json", default=None, help="also write the result here")
    parser.add_argument("--compile", action="store_true", help="both sides compiled")
    args = parser.parse_args(argv)
    result = run(args)
    compiled = ", compiled (uci.train.compile)" if args.compile else ""
    print(f"device {result['device']}, {result['threads']} thread(s), batch 200{compiled}")
    print("| shape | members | separate model-steps/s | packed model-steps/s | packed/separate |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in result["rows"]:
        print(f"| {r['model']} (d={r['d']}, L={r['L']}, H={r['H']}) | {r['members']} | "
              f"{r['separate_model_steps_per_s']:.1f} | {r['packed_model_steps_per_s']:.1f} | "
              f"{r['packed/separate']:.2f}x |")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
