r"""``make gpu-check``: what a first run on a CUDA machine must establish, as one table.

Rows, in order (under 8 minutes on one recent GPU):

* the device, its numerics settings (:func:`bnaf.core.runtime.configure_numerics`);
* the CUDA tests (``tests/test_cuda.py``: training steps of the three families under
  ``torch.cuda.set_sync_debug_mode("error")``, kill-and-resume through the CLI; and the tests
  elsewhere that skip without CUDA), run by pytest in a child process;
* training-step throughput, ours against the authors' approach (``authors_reference.py``) and
  pyro's ``BlockAutoregressive`` (if installed), on the POWER-, MINIBOONE- and BSDS300-like
  shapes (``train_step.py``), and ours with the fast-vs-exact fallback decided on the host (one
  sync per layer) against the default decided on the device;
* packed seeds against separate runs (``pack.py``): model-steps per second of 3 seeds trained
  as one pack (``bnaf/uci/pack.py``) and as 3 separate runs, on the same three shapes;
* one epoch of a POWER-sized (1,615,917 x 6, L=2, H=40d) and a BSDS300-sized
  (1,000,000 x 63, L=2, H=20d) synthetic training split with the paper's training settings, then
  the validation pass (cut at ``--epoch-budget`` seconds, the full epoch then projected);
* a VAE training step (MNIST-shaped, B-NAF K=8, H=4d, batch 100, dynamic binarisation), with
  the determinism settings and without, and a short importance-sampled NLL.

Without CUDA it prints one line saying so and exits with status 1 (nothing was checked).
``--device cpu --smoke`` runs every part at toy sizes on the CPU (a test of this script).

Usage::

    python benchmarks/gpu_check.py            # make gpu-check
    python benchmarks/gpu_check.py --skip-tests --epoch-budget 20
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as train_step.py, before torch starts

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

Row = tuple[str, str, str]

#: the CUDA tests: the file of them and those elsewhere that skip without CUDA
CUDA_TESTS = [
    "tests/test_cuda.py",
    "tests/test_flow.py::test_cuda",
    "tests/test_inverse.py::test_cuda_matches_cpu",
]
#: (name, train rows, validation rows, d, L, k): the MAF splits' sizes
EPOCHS = [("POWER", 1_615_917, 180_750, 6, 2, 40), ("BSDS300", 1_000_000, 50_000, 63, 2, 20)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(step: Callable[[int], object], device: torch.device, steps: int, repeats: int) -> float:
    r"""Steps per second, best of ``repeats`` runs of ``steps`` steps, after two warm-ups."""
    step(0)
    step(1)
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        for i in range(steps):
            step(i)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return steps / best


def cuda_tests(timeout: float) -> Row:
    r"""Run the CUDA tests in a child pytest; one row with the counts and the failures."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        cmd += ["-p", "no:benchmark", f"--junitxml={xml}", *CUDA_TESTS]
        env = os.environ | {"PYTHONPATH": str(ROOT)}
        t0 = time.perf_counter()
        try:
            subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return ("CUDA tests", "TIMED OUT", f"after {timeout:.0f} s: {' '.join(CUDA_TESTS)}")
        seconds = time.perf_counter() - t0
        if not xml.is_file():
            return ("CUDA tests", "NOT RUN", "pytest wrote no report")
        cases = ET.parse(xml).getroot().iter("testcase")
        outcome: dict[str, list[str]] = {"passed": [], "failed": [], "skipped": []}
        verdicts = {"failure": "failed", "error": "failed", "skipped": "skipped"}
        for case in cases:
            kind = next((c.tag for c in case if c.tag in verdicts), "")
            outcome[verdicts.get(kind, "passed")].append(case.get("name", "?"))
    counts = ", ".join(f"{len(v)} {k}" for k, v in outcome.items())
    verdict = "FAILED" if outcome["failed"] else "passed" if outcome["passed"] else "none ran"
    detail = f"{counts} in {seconds:.0f} s"
    if outcome["failed"]:
        detail += "; failed: " + ", ".join(outcome["failed"])
    return ("CUDA tests", f"{verdict} ({counts.split(',')[0]})", detail)


def step_rows(device: torch.device, smoke: bool) -> list[Row]:
    r"""ours vs authors vs pyro per shape (``train_step.py``), and ours decided on the host."""
    import train_step
    from train_step import CONFIGS, TINY, _step_fn

    from bnaf.flows import BNAF
    from bnaf.flows.logjac import fallback_decision

    steps, repeats = (2, 1) if smoke else (20, 3)
    args = argparse.Namespace(
        device=str(device), threads=torch.get_num_threads(), batch=200, steps=steps,
        repeats=repeats, warmup=2, configs=list(CONFIGS), tiny=smoke, no_pyro=False, stat="median",
        compile=not smoke,  # Triton compiles each shape once: about a minute in all
    )  # fmt: skip
    result = train_step.run(args)
    rows: list[Row] = []
    for r in result["rows"]:
        pyro = "pyro not installed" if r["pyro"] is None else (
            f"pyro {r['pyro']:.1f}/s (ours/pyro {r['ours/pyro']:.2f})"
        )  # fmt: skip
        rows.append(
            (
                f"step {r['model']} (d={r['d']}, L={r['L']}, H={r['H']}, batch 200)",
                f"ours {r['ours']:.1f} steps/s",
                f"authors {r['authors']:.1f}/s (ours/authors {r['ours/authors']:.2f}); {pyro}",
            )
        )
        rows.append(
            (
                f"step {r['model']} fused Adam (uci.train.fused_adam)",
                f"{r['ours-fused']:.1f} steps/s",
                f"fused/ours {r['fused/ours']:.2f}, time/dense products "
                f"{r['time ours-fused/products']:.2f}",
            )
        )
        if r["ours-compiled"] is not None:
            rows.append(
                (
                    f"step {r['model']} compiled (uci.train.compile)",
                    f"{r['ours-compiled']:.1f} steps/s",
                    f"compiled/ours {r['compiled/ours']:.2f}, "
                    f"compiled/authors {r['compiled/authors']:.2f}",
                )
            )
    for name, (dim, flows, layers, k) in (TINY if smoke else CONFIGS).items():
        torch.manual_seed(0)
        model = BNAF(dim, flows=flows, layers=layers, hidden_factor=k).to(device)
        gen = torch.Generator().manual_seed(1)
        batches = [torch.randn(200, dim, generator=gen).to(device) for _ in range(4)]
        step = _step_fn(model, batches)
        rates = {}
        for where in ("device", "host"):
            with fallback_decision(where):  # type: ignore[arg-type]
                rates[where] = _rate(step, device, steps, repeats)
        rows.append(
            (
                f"step {name}: fallback on device vs host",
                f"{rates['device'] / rates['host']:.2f}x",
                f"device {rates['device']:.1f}/s (no sync), host {rates['host']:.1f}/s "
                "(a sync per layer)",
            )
        )
    return rows


def pack_rows(device: torch.device, smoke: bool) -> list[Row]:
    r"""3 seeds as one pack vs 3 separate runs, whole training steps (``pack.py``)."""
    from pack import measure
    from train_step import CONFIGS, TINY

    steps, repeats = (2, 1) if smoke else (20, 3)
    rows: list[Row] = []
    for name, dims in (TINY if smoke else CONFIGS).items():
        r = measure(name, dims, 3, device, steps, repeats)
        rows.append(
            (
                f"pack {name} (3 seeds, d={r['d']}, L={r['L']}, H={r['H']})",
                f"{r['packed/separate']:.2f}x",
                f"packed {r['packed_model_steps_per_s']:.1f} model-steps/s, separate "
                f"{r['separate_model_steps_per_s']:.1f}",
            )
        )
    return rows


def epoch_rows(device: torch.device, budget: float, smoke: bool) -> list[Row]:
    r"""One epoch of a full-sized synthetic split with the paper's settings, then validation."""
    from dataclasses import replace

    from bnaf.uci.params import load_uci
    from bnaf.uci.trainer import Trainer

    params = load_uci(ROOT / "params" / "paper" / "uci.yaml")
    tp = params.train
    rows: list[Row] = []
    for name, n_train, n_val, dim, layers, k in EPOCHS:
        if smoke:
            n_train, n_val, k = 2000, 500, 2
        gen = torch.Generator().manual_seed(0)
        x_train = torch.randn(n_train, dim, generator=gen).to(device)
        x_val = torch.randn(n_val, dim, generator=gen).to(device)
        flow = replace(params.flow, layers=layers, hidden_factor=k)
        trainer = Trainer(x_train, x_val, flow, 0, tp, device, log=lambda line: None)
        perm = torch.randperm(n_train, generator=gen).to(device)
        total = math.ceil(n_train / tp.batch_size)
        _sync(device)
        t0 = time.perf_counter()
        done = 0
        while done < total:
            trainer.step(x_train[perm[done * tp.batch_size : (done + 1) * tp.batch_size]])
            done += 1
            if done % 100 == 0:
                _sync(device)
                if time.perf_counter() - t0 > budget:
                    break
        _sync(device)
        seconds = time.perf_counter() - t0
        projected = seconds * total / done
        t1 = time.perf_counter()
        val_ll, _ = trainer.validate()
        val_s = time.perf_counter() - t1
        part = "whole epoch" if done == total else f"{done}/{total} steps, projected"
        rows.append(
            (
                f"epoch {name}-sized ({n_train:,} x {dim}, L={layers}, H={k}d)",
                f"{projected:.0f} s",
                f"{part}; {done * tp.batch_size / seconds:,.0f} samples/s; validation "
                f"{n_val:,} rows in {val_s:.1f} s (LL {val_ll:.2f}, eval batch "
                f"{tp.eval_batch_size})",
            )
        )
        del trainer, x_train, x_val
    return rows


def vae_rows(device: torch.device, smoke: bool) -> list[Row]:
    r"""A VAE step (with and without the determinism settings) and a short IS NLL."""
    from bnaf.core.runtime import configure_numerics
    from bnaf.vae.evaluate import importance_nll
    from bnaf.vae.params import load_vae
    from bnaf.vae.train import binarise, build_model, train_step

    params = load_vae(ROOT / "params" / "paper" / "vae.yaml")
    config = "bnaf-K2-H1d" if smoke else "bnaf-K8-H4d"
    torch.manual_seed(0)
    model = build_model(params, config, (1, 28, 28), "bernoulli", 0).to(device)
    optimiser = torch.optim.Adamax(model.parameters(), lr=params.lr, eps=params.adamax_eps)
    batch = params.batch_size
    images = torch.rand(4 * batch, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    images = images.to(device)
    gen = torch.Generator().manual_seed(2)

    def step(i: int) -> None:
        x = binarise(images[(i % 4) * batch : (i % 4 + 1) * batch], gen)
        train_step(model, optimiser, x, 1.0)

    steps, repeats = (2, 1) if smoke else (20, 3)
    rate = _rate(step, device, steps, repeats)
    # The cost of determinism: the same step with cuDNN free to pick and benchmark.
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, True
    try:
        free = _rate(step, device, steps, repeats)
    finally:
        configure_numerics(device)
    n, samples = (2, 20) if smoke else (10, params.nll_samples.get("mnist", 5000))
    _sync(device)
    t0 = time.perf_counter()
    nll = importance_nll(model, images[:n].round(), samples, params.nll_chunk)
    _sync(device)
    seconds = time.perf_counter() - t0
    return [
        (
            f"VAE step (MNIST-shaped, {config}, batch {batch})",
            f"{rate:.1f} steps/s",
            f"without the determinism settings {free:.1f}/s ({free / rate:.2f}x); "
            "dynamic binarisation on the device",
        ),
        (
            f"IS NLL ({n} images x {samples} samples)",
            f"{seconds:.1f} s",
            f"{seconds / n * 10_000 / 60:.0f} min projected for a 10,000-image test set; "
            f"mean {float(nll.mean()):.1f} nats (untrained model)",
        ),
    ]


def _table(rows: list[Row]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=["check", "result", "detail"], tablefmt="github")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu with --smoke")
    parser.add_argument("--smoke", action="store_true", help="toy sizes (a test of the script)")
    parser.add_argument("--skip-tests", action="store_true", help="leave the CUDA tests out")
    parser.add_argument("--tests-timeout", type=float, default=240.0, help="seconds")
    parser.add_argument("--epoch-budget", type=float, default=50.0, help="seconds per epoch")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        build = torch.version.cuda or "none"
        print(
            f"gpu-check: no CUDA device on this machine (torch {torch.__version__}, CUDA build "
            f"{build}); nothing was checked."
        )
        return 1
    if device.type != "cuda" and not args.smoke:
        parser.error("a CPU run is only a smoke test of this script: add --smoke")

    from bnaf.core.runtime import configure_numerics, environment_info

    configure_numerics(device)
    start = time.perf_counter()
    env = environment_info(device)
    gpu = env.get("gpu_info", {})
    numerics = env["numerics"]
    rows: list[Row] = [
        (
            "device",
            env.get("gpu") or env["processor"],
            f"torch {env['torch']}, CUDA {gpu.get('cuda')}, cuDNN {gpu.get('cudnn')}, "
            f"capability {gpu.get('capability')}, {gpu.get('memory_gb')} GB",
        ),
        (
            "numerics",
            "TF32 off" if not (numerics["matmul_allow_tf32"] or numerics["cudnn_allow_tf32"])
            else "TF32 ON",
            ", ".join(f"{k}={v}" for k, v in numerics.items()),
        ),
    ]  # fmt: skip
    if args.skip_tests or args.smoke:
        rows.append(("CUDA tests", "not run", "--skip-tests or --smoke"))
    else:
        rows.append(cuda_tests(args.tests_timeout))
    rows += step_rows(device, args.smoke)
    rows += pack_rows(device, args.smoke)
    rows += epoch_rows(device, args.epoch_budget, args.smoke)
    rows += vae_rows(device, args.smoke)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        rows.append(("peak GPU memory", f"{peak:.2f} GB", "this process (tests run apart)"))
    rows.append(("total", f"{time.perf_counter() - start:.0f} s", time.strftime("%Y-%m-%d")))
    print(_table(rows))
    return 1 if any(r[1].startswith(("FAILED", "TIMED OUT")) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
