r"""Time one B-NAF training step against pyro's ``BlockAutoregressive`` and the authors' approach.

A step is what the density-estimation trainer does per batch (Section 5.3 and the authors'
density_estimation.py): forward pass with log-det, NLL under a standard normal base,
backward, gradient-norm clipping at 0.1, an Adam step. Each side gets the same architecture
(asserted: parameter shapes, hidden sizes, residuals) and the same batches.

Two more columns time, in the same process, what the structure has to pay for: ``products``, the
dense matrix products of the same shapes alone (every masked layer's ``x W^T`` with a dense
``W``, chained, and the backward products for the inputs and weights), and ``ours-dense``, ours
with every layer forced onto the dense masked product (``MaskedBlockLinear.panels = 1``), shown
where ours would skip zero blocks (bnaf.flows.blocksparse). ``ours-fused`` is ours with the
optimiser the paper budget trains with (``uci.train.fused_adam: true``: ``bnaf.core.optim.Adam``
with one fused kernel per parameter) instead of ``torch.optim.Adam``'s loop, which every side
above shares.

Usage::

    python benchmarks/train_step.py                   # CPU, 2 threads, the three models
    python benchmarks/train_step.py --device cuda
    python benchmarks/train_step.py --steps 2 --repeats 1 --warmup 0 --tiny   # smoke run
    python benchmarks/train_step.py --no-pyro --compile --threads 1   # + uci.train.compile
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time

# On shared cores, OpenMP threads that spin while waiting for a descheduled peer stall every
# parallel operation (measured: up to 4x on the MINIBOONE-like model). Passive waiting must be
# chosen before torch starts its thread pool; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from authors_reference import AuthorsBNAF  # noqa: E402

from bnaf.core.optim import Adam  # noqa: E402
from bnaf.flows import BNAF, BlockFlow, MaskedBlockLinear  # noqa: E402
from bnaf.flows.blocksparse import panels_for  # noqa: E402
from bnaf.flows.compiled import CompiledLoss  # noqa: E402

#: name -> (d, flows, L, k): POWER-, MINIBOONE- and BSDS300-like models (H = k d).
CONFIGS = {
    "power": (6, 5, 2, 40),
    "miniboone": (43, 5, 1, 10),
    "bsds300": (63, 5, 2, 20),
}
TINY = {"tiny": (3, 2, 2, 2)}
_LOG_2PI = math.log(2 * math.pi)


def _pyro_model(dim: int, flows: int, layers: int, k: int) -> nn.Module | None:
    try:
        from pyro.distributions.transforms import BlockAutoregressive, Permute
    except ImportError:
        return None

    class PyroBNAF(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.flows = nn.ModuleList(
                BlockAutoregressive(dim, [k] * layers, "tanh", "gated" if f < flows - 1 else None)
                for f in range(flows)
            )
            self.perm = Permute(torch.arange(dim - 1, -1, -1))

        def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
            log_det = 0.0
            for i, t in enumerate(self.flows):
                # _call is what t(x) runs on a cache miss; it leaves the per-dimension log
                # Jacobian diagonal that log_abs_det_jacobian sums. Going through t(x) would
                # reuse a cached graph whenever a batch tensor comes round again.
                y = t._call(x)
                log_det = log_det + t._cached_logDetJ.sum(-1)
                x = self.perm(y) if i < flows - 1 else y
            return x, log_det

    return PyroBNAF()


def _skips_zero_blocks(model: nn.Module, device: torch.device) -> bool:
    """Whether some masked layer of ``model`` takes the block-sparse product on ``device``."""
    return any(
        panels_for(m.dim, *m.weight.shape, device) > 1
        for m in model.modules()
        if isinstance(m, MaskedBlockLinear)
    )


def _describe(model: nn.Module) -> dict:
    """Architecture summary compared across implementations."""
    shapes = sorted(tuple(p.shape) for p in model.parameters())
    return {"params": sum(p.numel() for p in model.parameters()), "shapes": shapes}


def _layout(name: str, model: nn.Module) -> list[tuple]:
    """Per flow: (output sizes of the masked layers, residual kind), read from each model."""
    if name == "ours":
        flows = [t for t in model.transforms if isinstance(t, BlockFlow)]
        return [(tuple(lin.dim * lin.out_factor for lin in f.linears), f.residual) for f in flows]
    if name == "pyro":
        return [
            (tuple(lin.out_features for lin in t.layers), t.residual or "none")
            for t in model.flows
        ]
    return [
        (
            tuple(m.out_features for m in f.mods if hasattr(m, "out_features")),
            "none" if f.gate is None else "gated",
        )
        for f in model.flows
    ]


def _check_same_architecture(models: dict[str, nn.Module], dim: int, flows: int, L: int, k: int):
    """Every side builds the same flow: layer sizes, residuals, parameter shapes and counts."""
    expected = [((dim * k,) * L + (dim,), "gated")] * (flows - 1) + [
        ((dim * k,) * L + (dim,), "none")
    ]
    ours = _describe(models["ours"])
    for name, model in models.items():
        assert _layout(name, model) == expected, (name, _layout(name, model))
        desc = _describe(model)
        # weight (out, in), row log-scale (out, 1), bias (out,) per layer, a gate per residual
        assert desc == ours, f"{name}: {desc['params']} parameters vs ours {ours['params']}"


@torch.no_grad()
def _check_same_function(models: dict[str, nn.Module], dim: int) -> None:
    """Give every side ours's parameter values; all must then compute the same z and log-det.
    pyro's gate weighs the input (``sigmoid(gate) x + ...``), ours the transform: negate it."""
    ours = [t for t in models["ours"].transforms if isinstance(t, BlockFlow)]
    for name, model in models.items():
        if name == "ours":
            continue
        for f_ours, f in zip(ours, model.flows):
            layers = f.layers if name == "pyro" else [m for m in f.mods if hasattr(m, "bias")]
            for lin_ours, lin in zip(f_ours.linears, layers):
                lin._weight.copy_(lin_ours.weight)
                lin._diag_weight.copy_(lin_ours.log_scale)
                lin.bias.copy_(lin_ours.bias)
            if f_ours.residual == "gated":
                f.gate.copy_(-f_ours.gate if name == "pyro" else f_ours.gate)
    x = torch.randn(64, dim, generator=torch.Generator().manual_seed(2))
    z_ref, ld_ref = models["ours"](x)
    for name, model in models.items():
        z, ld = model(x)
        torch.testing.assert_close(z, z_ref, rtol=1e-4, atol=1e-4, msg=f"{name}: z differs")
        torch.testing.assert_close(ld, ld_ref, rtol=1e-4, atol=1e-3, msg=f"{name}: log-det")


def _loss(model: nn.Module, x: Tensor) -> Tensor:
    """Mean NLL of a batch under a standard-normal base (every side's loss)."""
    z, log_det = model(x)
    return (0.5 * (z.square().sum(-1) + z.shape[-1] * _LOG_2PI) - log_det).mean()


def _step_fn(
    model: nn.Module, batches: list[Tensor], compiled: bool = False, fused: bool = False
) -> Callable[[int], None]:
    """One training step of ``model``; ``compiled`` runs the loss through
    :class:`bnaf.flows.compiled.CompiledLoss`, as ``uci.train.compile: true`` does, and
    ``fused`` steps our fused Adam, as ``uci.train.fused_adam: true`` does."""
    if fused:
        opt: torch.optim.Optimizer = Adam(model.parameters(), lr=1e-2, fused=True)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    params = list(model.parameters())
    loss_fn = CompiledLoss(_loss) if compiled else _loss

    def step(i: int) -> None:
        loss = loss_fn(model, batches[i % len(batches)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_norm=0.1)
        opt.step()

    return step


def _products_fn(model: BNAF, batches: list[Tensor]) -> Callable[[int], None]:
    """The dense matrix products of ``model``'s masked layers, chained as in the flow: forward
    ``h W^T`` and the backward products for ``W`` (and for ``h``, past the first layer)."""
    shapes = [m.weight.shape for m in model.modules() if isinstance(m, MaskedBlockLinear)]
    like = batches[0]
    weights = [torch.randn(s, device=like.device, dtype=like.dtype) for s in shapes]
    for w in weights:
        w.requires_grad_()

    def step(i: int) -> None:
        h = batches[i % len(batches)]
        for w in weights:
            h = F.linear(h, w)
        h.backward(torch.ones_like(h))
        for w in weights:
            w.grad = None

    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    configs = TINY if args.tiny else {n: CONFIGS[n] for n in args.configs}
    rows = []
    for name, (dim, flows, layers, k) in configs.items():
        torch.manual_seed(0)
        models: dict[str, nn.Module] = {
            "ours": BNAF(dim, flows=flows, layers=layers, hidden_factor=k),
            "authors": AuthorsBNAF(dim, flows, layers, k),
        }
        pyro = None if args.no_pyro else _pyro_model(dim, flows, layers, k)
        if pyro is not None:
            models["pyro"] = pyro
        _check_same_architecture(models, dim, flows, layers, k)
        _check_same_function(models, dim)
        gen = torch.Generator().manual_seed(1)
        batches = [torch.randn(args.batch, dim, generator=gen).to(device) for _ in range(4)]
        steps = {n: _step_fn(m.to(device), batches) for n, m in models.items()}
        steps["products"] = _products_fn(models["ours"], batches)
        if _skips_zero_blocks(models["ours"], device):
            torch.manual_seed(0)
            dense = BNAF(dim, flows=flows, layers=layers, hidden_factor=k).to(device)
            for m in dense.modules():
                if isinstance(m, MaskedBlockLinear):
                    m.panels = 1
            steps["ours-dense"] = _step_fn(dense, batches)
        torch.manual_seed(0)  # the same weights as ours, stepped by the fused Adam
        twin = BNAF(dim, flows=flows, layers=layers, hidden_factor=k).to(device)
        twin.load_state_dict(models["ours"].state_dict())
        steps["ours-fused"] = _step_fn(twin, batches, fused=True)
        if args.compile:  # the same weights as ours, its loss through torch.compile
            torch.manual_seed(0)
            twin = BNAF(dim, flows=flows, layers=layers, hidden_factor=k).to(device)
            twin.load_state_dict(models["ours"].state_dict())
            steps["ours-compiled"] = _step_fn(twin, batches, compiled=True)
        for step in steps.values():
            for i in range(args.warmup):
                step(i)
        wall: dict[str, list[float]] = {n: [] for n in steps}
        cpu_time: dict[str, list[float]] = {n: [] for n in steps}
        for _ in range(args.repeats):  # interleaved repeats: the cores are shared
            for n, step in steps.items():
                _sync(device)
                t0, c0 = time.perf_counter(), time.process_time()
                for i in range(args.steps):
                    step(i)
                _sync(device)
                wall[n].append(time.perf_counter() - t0)
                cpu_time[n].append(time.process_time() - c0)
        pick = min if args.stat == "best" else statistics.median
        rate = {n: args.steps / pick(t) for n, t in wall.items()}
        # CPU seconds of this process per step: less sensitive to other jobs on the cores
        cpu = {n: args.steps / pick(t) for n, t in cpu_time.items()}
        row = {
            "model": name,
            "d": dim,
            "flows": flows,
            "L": layers,
            "H": f"{k}d",
            "params": _describe(models["ours"])["params"],
            "ours": rate["ours"],
            "authors": rate["authors"],
            "pyro": rate.get("pyro"),
            "ours/authors": rate["ours"] / rate["authors"],
            "ours/pyro": rate["ours"] / rate["pyro"] if "pyro" in rate else None,
            "ours/authors (cpu)": cpu["ours"] / cpu["authors"],
            "ours/pyro (cpu)": cpu["ours"] / cpu["pyro"] if "pyro" in cpu else None,
            "products": rate["products"],
            "ours-dense": rate.get("ours-dense"),
            # a ratio of times, not of rates: 1.0 means the whole step costs what the dense
            # products of its shapes alone cost
            "time ours/products": rate["products"] / rate["ours"],
            "time ours-dense/products": (
                rate["products"] / rate["ours-dense"] if "ours-dense" in rate else None
            ),
            "time ours/products (cpu)": cpu["products"] / cpu["ours"],
            "ours-fused": rate["ours-fused"],
            "fused/ours": rate["ours-fused"] / rate["ours"],
            "time ours-fused/products": rate["products"] / rate["ours-fused"],
            "ours-compiled": rate.get("ours-compiled"),
            "compiled/ours": _ratio(rate, "ours-compiled", "ours"),
            "compiled/authors": _ratio(rate, "ours-compiled", "authors"),
        }
        rows.append(row)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": str(device),
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "batch": args.batch,
        "steps": args.steps,
        "repeats": args.repeats,
        "stat": args.stat,
        "pyro": "skipped (not installed or --no-pyro)" if rows[0]["pyro"] is None else "run",
        "rows": rows,
    }


def _ratio(rate: dict[str, float], a: str, b: str) -> float | None:
    """``rate[a] / rate[b]``, or None where a side was not run."""
    return rate[a] / rate[b] if a in rate and b in rate else None


def _cell(value: object) -> object:
    """Two decimals for rates and ratios, "-" for a side that was not run."""
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else value


def _table(result: dict) -> str:
    from tabulate import tabulate

    cols = ["model", "d", "flows", "L", "H", "params", "ours", "authors", "pyro"]
    cols += ["ours/authors", "ours/pyro", "ours/authors (cpu)", "ours/pyro (cpu)"]
    cols += ["products", "ours-dense", "time ours/products", "time ours-dense/products"]
    cols += ["time ours/products (cpu)", "ours-fused", "fused/ours", "time ours-fused/products"]
    if any(r["ours-compiled"] is not None for r in result["rows"]):
        cols += ["ours-compiled", "compiled/ours", "compiled/authors"]
    body = [[_cell(r[c]) for c in cols] for r in result["rows"]]
    head = (
        f"steps/s, batch {result['batch']}, {result['stat']} of {result['repeats']} x"
        f" {result['steps']}"
        f" steps, {result['device']}, threads={result['threads']}"
        f" (OMP_WAIT_POLICY={result['omp_wait_policy']}), torch {result['torch']},"
        f" {result['date']}; pyro: {result['pyro']}"
    )
    return head + "\n" + tabulate(body, headers=cols, floatfmt=".2f")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--batch", type=int, default=200, help="batch size (authors: 200)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats")
    parser.add_argument(
        "--stat", choices=["median", "best"], default="median", help="of the repeats"
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--tiny", action="store_true", help="one tiny model (smoke test)")
    parser.add_argument("--no-pyro", action="store_true", help="leave pyro out")
    parser.add_argument(
        "--compile", action="store_true", help="also time ours with uci.train.compile: true"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    result = run(args)
    print(_table(result))
    if args.json:
        from bnaf.core.io import atomic_write_json

        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
