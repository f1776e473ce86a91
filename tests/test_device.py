"""Device behaviour checked on the CPU: the log-Jacobian fallback decided on the device, the
exact product's bounded temporaries, training steps that never read a device value on the
host (run on the ``meta`` device, where any such read raises), and the numerics settings."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import bnaf.flows.logjac as logjac
from bnaf.core.runtime import configure_numerics, environment_info
from bnaf.flows import BNAF, BlockFlow
from bnaf.flows.logjac import exact_log_matvec, fallback_decision, log_matvec
from bnaf.uci.params import load_uci
from bnaf.uci.runs import flow_config
from bnaf.uci.trainer import Trainer
from bnaf.vae.params import load_vae
from bnaf.vae.train import binarise, build_model, train_step

ROOT = Path(__file__).resolve().parents[1]
META = torch.device("meta")


def _naive(log_a: torch.Tensor, log_g: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(log_a.unsqueeze(0) + log_g.unsqueeze(-2), dim=-1)


def _grads(fn, log_a, log_g, w):
    return torch.autograd.grad((fn(log_a, log_g) * w).sum(), (log_a, log_g))


@pytest.mark.parametrize("where", ["host", "device"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fallback_mixed_batch_equals_logsumexp(where: str, dtype: torch.dtype) -> None:
    """Rows 0 and 2 need the exact product (the two factors' maxima sit 1000 nats apart at
    different q), rows 1 and 3 do not: values and gradients equal the plain log-sum-exp."""
    torch.manual_seed(0)
    log_a = torch.randn(3, 4, 5, dtype=dtype)
    log_a[:, :, 0] = 0.0
    log_a[:, :, 1:] -= 1000.0
    log_g = torch.randn(4, 3, 5, dtype=dtype)
    log_g[::2, :, 0] -= 1000.0
    log_a.requires_grad_()
    log_g.requires_grad_()
    w = torch.randn(4, 3, 4, dtype=dtype)
    with fallback_decision(where):
        out = log_matvec(log_a, log_g)
        grads = _grads(log_matvec, log_a, log_g, w)
    torch.testing.assert_close(out, _naive(log_a, log_g))
    for got, ref in zip(grads, _grads(_naive, log_a, log_g, w)):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, ref)


@pytest.mark.parametrize("p", [1, 3])
@pytest.mark.parametrize("spread", [1.0, 1000.0])
def test_device_decision_equals_logsumexp(p: int, spread: float) -> None:
    torch.manual_seed(1)
    log_a = (spread * torch.randn(4, p, 6)).requires_grad_()
    log_g = (spread * torch.randn(7, 4, 6)).requires_grad_()
    w = torch.randn(7, 4, p)
    with fallback_decision("device"):
        torch.testing.assert_close(log_matvec(log_a, log_g), _naive(log_a, log_g))
        grads = _grads(log_matvec, log_a, log_g, w)
    for got, ref in zip(grads, _grads(_naive, log_a, log_g, w)):
        torch.testing.assert_close(got, ref)


@pytest.mark.parametrize("scale", [1.0, 600.0])
@pytest.mark.parametrize("activation", ["tanh", "leakyrelu"])
def test_flow_decided_on_device_equals_host(scale: float, activation: str) -> None:
    """At scale 600 the tanh units saturate and the host path falls back to the log chain."""
    torch.manual_seed(3)
    flow = BlockFlow(3, layers=2, hidden_factor=3, residual="gated", activation=activation)
    x = (scale * torch.randn(5, 3)).requires_grad_()
    params = [x, *flow.parameters()]
    results = {}
    for where in ("host", "device"):
        with fallback_decision(where):
            z, log_det = flow(x)
            results[where] = (z, log_det, torch.autograd.grad(z.sum() + log_det.sum(), params))
    host, device = results["host"], results["device"]
    torch.testing.assert_close(device[0], host[0])
    torch.testing.assert_close(device[1], host[1])
    for a, b in zip(device[2], host[2]):
        torch.testing.assert_close(a, b)


def test_unknown_decision_is_refused() -> None:
    with pytest.raises(ValueError, match="host, device or deferred"), fallback_decision("gpu"):  # type: ignore[arg-type]
        pass


class _LargestTensor(TorchDispatchMode):
    """Records the most entries of any tensor an operation returns."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("where", ["host", "device"])
def test_exact_product_temporaries_are_bounded(where: str, monkeypatch) -> None:
    """With a 4,000-entry budget, (n=50, d=2, p=q=10) would need a 10,000-entry temporary
    unchunked; chunked, none exceeds the budget and values and gradients are unchanged."""
    torch.manual_seed(4)
    log_a = (1000.0 * torch.randn(2, 10, 10)).requires_grad_()
    log_g = (1000.0 * torch.randn(50, 2, 10)).requires_grad_()
    w = torch.randn(50, 2, 10)
    ref_out = exact_log_matvec(log_a, log_g)
    ref = _grads(log_matvec, log_a, log_g, w)
    monkeypatch.setattr(logjac, "EXACT_CHUNK_ELEMENTS", 4000)
    with fallback_decision(where), _LargestTensor() as mode:
        out = log_matvec(log_a, log_g)
        grads = _grads(log_matvec, log_a, log_g, w)
    assert mode.largest <= 4000
    torch.testing.assert_close(out, ref_out)
    for got, r in zip(grads, ref):
        torch.testing.assert_close(got, r)


def test_meta_device_detects_a_host_read() -> None:
    """The check the next tests rely on: deciding on the host reads a value, which the meta
    device cannot give."""
    model = BNAF(3, flows=2, layers=1, hidden_factor=2).to(META)
    with fallback_decision("host"), pytest.raises((RuntimeError, NotImplementedError)):
        model.log_prob(torch.empty(4, 3, device=META))


@pytest.mark.float32
def test_uci_step_reads_nothing_on_the_host() -> None:
    params = load_uci(ROOT / "params" / "quick" / "uci.yaml")
    x = torch.empty(64, 4, device=META)
    trainer = Trainer(x, x, flow_config(params, "L2_H4"), 0, params.train, META, log=print)
    loss, norm = trainer.step(x[:16])
    assert loss.device == META and norm.device == META and loss.shape == ()


@pytest.mark.float32
@pytest.mark.parametrize("config", ["vae", "bnaf-K2-H1d"])
def test_vae_step_reads_nothing_on_the_host(config: str) -> None:
    params = load_vae(ROOT / "params" / "quick" / "vae.yaml")
    model = build_model(params, config, (1, 28, 28), "bernoulli", 0).to(META)
    optimiser = torch.optim.Adamax(model.parameters(), lr=1e-3, eps=1e-7)
    batch = binarise(torch.empty(5, 1, 28, 28, device=META), torch.Generator())
    assert batch.device == META
    total = train_step(model, optimiser, batch, 0.5)
    assert total.device == META and total.dtype == torch.float64


@pytest.mark.float32
def test_toy_model_step_reads_nothing_on_the_host() -> None:
    model = BNAF(2, flows=3, layers=2, hidden_factor=4).to(META)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2, amsgrad=True)
    loss = -model.log_prob(torch.empty(64, 2, device=META)).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
    optimiser.step()


def test_binarise_on_cpu_draws_from_the_data_generator() -> None:
    """Same generator state, same draws (the CPU stream of earlier runs is kept); values are
    0/1 with the intensities as probabilities."""
    x = torch.rand(2000, 8)
    a = binarise(x, torch.Generator().manual_seed(5))
    b = binarise(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert abs(float(a.mean() - x.mean())) < 4 * math.sqrt(0.25 / a.numel())


def test_numerics_are_set_and_recorded(monkeypatch) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    torch.backends.cudnn.allow_tf32 = True
    try:
        configure_numerics("cpu")
        numerics = environment_info("cpu")["numerics"]
    finally:
        torch.backends.cudnn.allow_tf32 = True  # torch's default, for the tests that follow
    assert numerics["matmul_allow_tf32"] is False and numerics["cudnn_allow_tf32"] is False
    assert numerics["float32_matmul_precision"] == "highest"
    assert numerics["cudnn_deterministic"] is True and numerics["cudnn_benchmark"] is False
