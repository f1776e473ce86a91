"""On a CUDA device (skipped without one; ``pytest -m cuda``, part of ``make gpu-check``):
training steps of all three families never wait for the device (under
``torch.cuda.set_sync_debug_mode("error")`` any synchronising call raises), and runs killed
mid-way and restarted through the public CLI end as the uninterrupted run does.

The resume tests rely on the checkpoints saving every generator on the device it lives on and
loading onto the CPU; they hold the CLI to that, whatever the checkpoint code looks like.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
import yaml
from test_vae_train import frey_status, tiny_params
from toy_tiny import tiny_toy_params
from uci_synthetic import write_prepared

from bnaf.core.runtime import configure_numerics, environment_info
from bnaf.data.toy import sample2d
from bnaf.flows import BNAF
from bnaf.flows.pack import pack_log_prob
from bnaf.toy.params import load_toy
from bnaf.uci.pack import PackedTrainer
from bnaf.uci.params import load_uci
from bnaf.uci.runs import flow_config
from bnaf.uci.trainer import Trainer
from bnaf.vae.params import load_vae
from bnaf.vae.train import binarise, build_model, train_step

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.float32,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

ROOT = Path(__file__).resolve().parents[1]
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def numerics() -> None:
    configure_numerics(CUDA)  # as every training stage does


@contextlib.contextmanager
def no_sync() -> Iterator[None]:
    r"""Any call that makes the host wait for the device raises inside the block."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def _steps(step: Callable[[int], object], n: int = 3) -> None:
    step(0)  # first step outside: lazy initialisation (cuBLAS handles, optimiser state)
    with no_sync():
        for i in range(1, n + 1):
            step(i)
    torch.cuda.synchronize()


@pytest.mark.parametrize("config", ["L1_H4", "L2_H4"])
def test_uci_training_step_never_waits_for_the_device(config: str) -> None:
    params = load_uci(ROOT / "params" / "quick" / "uci.yaml")
    x = torch.randn(2000, 5, device=CUDA)
    trainer = Trainer(x, x[:200], flow_config(params, config), 0, params.train, CUDA, log=print)
    perm = torch.randperm(len(x), device=CUDA)
    results = []
    _steps(lambda i: results.append(trainer.step(x[perm[i * 200 : (i + 1) * 200]])))
    assert all(loss.is_cuda and bool(torch.isfinite(loss)) for loss, _ in results)


@pytest.mark.parametrize("config", ["L1_H4", "L2_H4"])
def test_packed_uci_step_never_waits_for_the_device(config: str) -> None:
    r"""Three seeds as one pack (bnaf/uci/pack.py): one step of each, no sync; each member's
    loss equals its model's own on its batch."""
    params = load_uci(ROOT / "params" / "quick" / "uci.yaml")
    x = torch.randn(2000, 5, device=CUDA)
    flow = flow_config(params, config)
    trainers = [Trainer(x, x[:200], flow, s, params.train, CUDA, log=print) for s in range(3)]
    pack = PackedTrainer(trainers)
    batches = torch.randn(5, 3, 200, 5, device=CUDA)
    results = []
    _steps(lambda i: results.append(pack.step(trainers, batches[i])))
    losses = results[-1][0]
    assert losses.is_cuda and bool(torch.isfinite(losses).all())
    models = [t.model for t in trainers]
    with torch.no_grad():  # on the device, the pack's numbers are each member's own
        packed = pack_log_prob(models, batches[0], pack._stack(trainers))
        own = torch.stack([m.log_prob(batches[0][i]) for i, m in enumerate(models)])
    torch.testing.assert_close(packed, own, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("config", ["L1_H4", "L2_H4"])
def test_a_compiled_uci_step_on_the_device_follows_the_eager_one(config: str) -> None:
    r"""``uci.train.compile: true`` on the GPU (Triton): three steps from the same weights
    give the eager run's losses to float32 rounding; the fallback flag is read once a step
    (the one synchronisation a compiled step makes, so no sync-debug block here)."""
    params = load_uci(ROOT / "params" / "quick" / "uci.yaml")
    x = torch.randn(2000, 5, device=CUDA)
    flow = flow_config(params, config)
    compiled_params = dataclasses.replace(params.train, compile=True)
    eager = Trainer(x, x[:200], flow, 0, params.train, CUDA, log=print)
    compiled = Trainer(x, x[:200], flow, 0, compiled_params, CUDA, log=print)
    for i in range(3):
        batch = x[i * 200 : (i + 1) * 200]
        (a, _), (b, _) = eager.step(batch), compiled.step(batch)
        assert b.is_cuda
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    assert compiled.loss.fallbacks == 0  # type: ignore[union-attr]


@pytest.mark.parametrize("config", ["vae", "bnaf-K2-H2d"])
@pytest.mark.parametrize("dynamic", [False, True])
def test_vae_training_step_never_waits_for_the_device(config: str, dynamic: bool) -> None:
    params = load_vae(ROOT / "params" / "quick" / "vae.yaml")
    model = build_model(params, config, (1, 28, 28), "bernoulli", 0).to(CUDA)
    optimiser = torch.optim.Adamax(model.parameters(), lr=params.lr, eps=params.adamax_eps)
    images = torch.rand(400, 1, 28, 28, device=CUDA)
    index = torch.randperm(400).pin_memory().to(CUDA, non_blocking=True)
    total = torch.zeros((), dtype=torch.float64, device=CUDA)
    gen = torch.Generator()

    def step(i: int) -> None:
        nonlocal total
        batch = images[index[i * 100 : (i + 1) * 100]]
        batch = binarise(batch, gen) if dynamic else batch.round()
        total += train_step(model, optimiser, batch, 0.5)

    _steps(step)
    assert bool(torch.isfinite(total))


def test_toy_model_step_never_waits_for_the_device() -> None:
    r"""The step of the toy B-NAF; the toy stage itself runs on the CPU (its plateau schedule
    reads the loss every step, as the authors' ``toy2d.py`` does)."""
    params = load_toy(ROOT / "params" / "quick" / "toy.yaml")
    cfg = params.density.bnaf
    model = BNAF(2, **cfg.flow.kwargs(), seed=0).to(CUDA)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.optimiser.lr, amsgrad=True)
    data = torch.from_numpy(sample2d("8gaussians", 4 * 64, 0)).float().to(CUDA)

    def step(i: int) -> None:
        loss = -model.log_prob(data[(i % 4) * 64 : (i % 4 + 1) * 64]).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        optimiser.step()

    _steps(step)


def test_environment_records_the_gpu_and_its_numerics() -> None:
    env = environment_info(CUDA)
    assert env["gpu"] == torch.cuda.get_device_name(CUDA)
    assert env["numerics"]["matmul_allow_tf32"] is False
    assert env["numerics"]["cudnn_allow_tf32"] is False
    assert env["numerics"]["deterministic_algorithms"] is True


# ------------------------------------------------------------------ kill and resume, CLI
def _kill_when(cmd: list[str], ready: Callable[[str], bool], log: Path, env: dict) -> None:
    r"""Start ``cmd``, SIGKILL it once ``ready(log text)``; fail if it finished first."""
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 300
        while proc.poll() is None and time.time() < deadline and not ready(log.read_text()):
            time.sleep(0.05)
        finished = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not finished, f"finished before it could be killed:\n{log.read_text()[-2000:]}"


def _env() -> dict[str, str]:
    return os.environ | {"PYTHONUNBUFFERED": "1"}


def _drop_timing(metrics: dict, keys: set[str]) -> dict:
    out = {k: v for k, v in metrics.items() if k not in keys}
    out["history"] = [
        {k: v for k, v in h.items() if k not in ("samples_per_s", "seconds")}
        for h in metrics["history"]
    ]
    return out


def test_uci_killed_on_cuda_resumes_to_the_same_result(tmp_path: Path) -> None:
    data = write_prepared(tmp_path / "d.h5", dim=4, sizes=(4000, 400, 400), seed=3)
    text = (ROOT / "params" / "quick" / "uci.yaml").read_text()
    params = yaml.safe_load(text)
    params["uci"]["train"].update(max_epochs=6, train_subset=None, device="cuda")
    (tmp_path / "uci.yaml").write_text(yaml.safe_dump(params))

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "bnaf", "uci", "train", "--params",
                str(tmp_path / "uci.yaml"), "--data", str(data), "--dataset", "toy",
                "--config", "L1_H4", "--seed", "2", "--out", str(out)]  # fmt: skip

    subprocess.run(cmd(tmp_path / "a"), check=True, capture_output=True, env=_env())
    _kill_when(cmd(tmp_path / "b"), lambda t: "epoch    3/" in t, tmp_path / "b.log", _env())
    subprocess.run(cmd(tmp_path / "b"), check=True, capture_output=True, env=_env())
    a, b = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in "ab")
    assert a["device"] == b["device"] == "cuda" and b["resumes"] >= 1
    skip = {"wall_s", "train_s", "throughput", "resumes", "environment"}
    assert _drop_timing(a, skip) == _drop_timing(b, skip)


def test_vae_killed_on_cuda_resumes_to_the_same_result(tmp_path: Path) -> None:
    params = tiny_params(tmp_path / "vae.yaml", device="cuda", max_epochs=8)
    status = frey_status(tmp_path)

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "bnaf", "vae", "train", "--params", str(params),
                "--dataset", "freyfaces", "--config", "bnaf-K2-H1d", "--seed", "1",
                "--status", str(status), "--out", str(out)]  # fmt: skip

    subprocess.run(cmd(tmp_path / "a"), check=True, capture_output=True, env=_env())
    _kill_when(cmd(tmp_path / "b"), lambda t: "epoch    2" in t, tmp_path / "b.log", _env())
    run = subprocess.run(cmd(tmp_path / "b"), capture_output=True, text=True, env=_env())
    assert run.returncode == 0, run.stderr[-2000:]
    a, b = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in "ab")
    assert [h["valid"] for h in a["history"]] == [h["valid"] for h in b["history"]]
    for key in ("test_neg_elbo", "test_nll", "valid_neg_elbo", "best_epoch"):
        assert a[key] == b[key], key


def test_toy_killed_on_a_cuda_machine_resumes_to_the_same_result(tmp_path: Path) -> None:
    r"""The toy stage trains on the CPU by design; on a machine with CUDA (generators on the
    device, numerics settings) a killed run must still end as the uninterrupted one."""
    params = tiny_toy_params(tmp_path / "toy.yaml", iterations=3000)

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "bnaf", "toy", "train", "--params", str(params),
                "--kind", "density", "--target", "8gaussians", "--model", "bnaf",
                "--out", str(out)]  # fmt: skip

    subprocess.run(cmd(tmp_path / "a"), check=True, capture_output=True, env=_env())
    _kill_when(cmd(tmp_path / "b"), lambda t: "iter    1000" in t, tmp_path / "b.log", _env())
    subprocess.run(cmd(tmp_path / "b"), check=True, capture_output=True, env=_env())
    a, b = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in "ab")
    assert a["test"] == b["test"]
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]


@pytest.mark.parametrize("amsgrad", [False, True])
def test_the_fused_adam_on_the_gpu_is_the_cpu_reference_update(amsgrad: bool) -> None:
    """``fused_adam: true`` on CUDA (the paper budget's optimiser there): 30 steps of the fused
    kernel on the GPU against the reference form on the CPU, float64, and no host sync."""
    from bnaf.core.optim import Adam

    torch.manual_seed(0)
    shapes = [(40, 9), (7,)]
    cpu = [torch.nn.Parameter(torch.randn(s, dtype=torch.float64)) for s in shapes]
    gpu = [torch.nn.Parameter(p.detach().to(CUDA)) for p in cpu]
    ref = Adam(cpu, lr=1e-2, eps=1e-3, amsgrad=amsgrad)
    fused = Adam(gpu, lr=1e-2, eps=1e-3, amsgrad=amsgrad, fused=True)
    grads = [[torch.randn(s, dtype=torch.float64) for s in shapes] for _ in range(30)]
    for g in grads:
        for p, q, gi in zip(cpu, gpu, g):
            p.grad, q.grad = gi.clone(), gi.to(CUDA)
        ref.step()
        with no_sync():
            fused.step()
    for p, q in zip(cpu, gpu):
        torch.testing.assert_close(q.detach().cpu(), p.detach(), rtol=0, atol=1e-12)


def test_forced_panels_on_the_gpu_are_the_dense_layer() -> None:
    """``MaskedBlockLinear.panels > 1`` on CUDA (the automatic choice keeps the dense product
    there): the panels' product, its row norms and gradients on the device, against the dense
    product on the same device, in float64."""
    from bnaf.flows import MaskedBlockLinear

    torch.manual_seed(0)
    layer = MaskedBlockLinear(9, 4, 5).to(CUDA, torch.float64)
    x = torch.randn(6, 36, dtype=torch.float64, device=CUDA, requires_grad=True)
    outs = []
    for panels in (1, 3):
        layer.panels = panels
        y, log_diag = layer(x)
        loss = y.square().sum() + log_diag.sum()
        outs.append([y, log_diag, *torch.autograd.grad(loss, (x, *layer.parameters()))])
    for dense, sparse in zip(*outs):
        assert sparse.device.type == "cuda"
        torch.testing.assert_close(sparse, dense)
