r"""Benchmark of the B-NAF inverse against the forward pass (a benchmark, not a timed test).

A POWER-sized model (d = 6, 5 flows, L = 2 hidden layers of H = 40 d units, gated residuals,
Table 3 of the paper's appendix / the authors' defaults) inverts ``--n`` points ``z = f(x)``,
``x ~ N(0, I)``; we report the wall time of the inverse and of one forward pass, their ratio,
the mean and largest number of evaluations of ``y_i`` per dimension, and the round-trip error.

    python benchmarks/inverse.py [--n 10000] [--device cpu|cuda] [--dtype float32|float64]
        [--model results/uci/power/.../model.pt] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from bnaf.core.runtime import environment_info, resolve_device
from bnaf.flows import BNAF, load_flow
from bnaf.flows.inverse import invert

__all__ = ["main"]


def _timed(fn, device: torch.device, repeats: int) -> tuple[float, float, object]:
    """Best wall time and best CPU time of ``repeats`` calls (after one warm-up call); the CPU
    time of this process is the fairer figure on a shared machine."""
    out = fn()
    best = best_cpu = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu, out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--model", default=None, help="a model.pt saved by save_flow (else random)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    if args.model:
        model = load_flow(args.model)
    else:
        model = BNAF(dim=6, flows=5, layers=2, hidden_factor=40, residual="gated", seed=0)
    model = model.to(device=device, dtype=dtype).eval()
    x = torch.randn(args.n, model.dim, device=device, dtype=dtype)
    with torch.no_grad():
        t_fwd, c_fwd, (z, _) = _timed(lambda: model(x), device, args.repeats)
        t_inv, c_inv, res = _timed(lambda: invert(model, z), device, args.repeats)
        z_back, _ = model(res.x)
    figures = {
        "model": model.config,
        "n": args.n,
        "dtype": args.dtype,
        "forward_s": t_fwd,
        "inverse_s": t_inv,
        "ratio": t_inv / t_fwd,
        "forward_cpu_s": c_fwd,
        "inverse_cpu_s": c_inv,
        "cpu_ratio": c_inv / c_fwd,
        "evaluations_per_dimension_mean": res.iterations.mean().item(),
        "evaluations_per_dimension_max": int(res.max_iterations.max()),
        "evaluations_mean_by_flow_and_dim": res.iterations.tolist(),
        "inside_fraction": res.inside.double().mean().item(),
        "converged_fraction": res.converged.double().mean().item(),
        "max_abs_error_x": (res.x - x).abs().max().item(),
        "max_abs_error_z": (z_back - z).abs().max().item(),
        "environment": environment_info(device),
    }
    print(
        f"{args.n} points, d={model.dim}, {args.dtype} on {device}: forward {t_fwd * 1e3:.1f} ms, "
        f"inverse {t_inv * 1e3:.1f} ms ({t_inv / t_fwd:.1f}x; CPU time {c_inv / c_fwd:.1f}x); "
        "evaluations per dimension: "
        f"mean {figures['evaluations_per_dimension_mean']:.2f}, "
        f"max {figures['evaluations_per_dimension_max']}; "
        f"|x - f^-1(f(x))| <= {figures['max_abs_error_x']:.2e}, "
        f"|f(f^-1(z)) - z| <= {figures['max_abs_error_z']:.2e}"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)
    return figures


if __name__ == "__main__":
    main()
