"""The fast training paths of the toy baselines equal their plain autograd references.

Planar flows (K = 32, 500k steps in Section 5.2) run a hand-written backward
(:class:`bnaf.flows.planar.PlanarStack`), Glow merges actnorm and ``W`` and batches its
parameter-only log-determinants, and the toy training loop uses multi-tensor optimiser kernels
and draws data for many steps at once. Each is compared, in float64, with the straightforward
version: layer-by-layer autograd and a textbook training loop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bnaf.core.checkpoint import Checkpoint
from bnaf.core.stats import standard_normal_log_prob
from bnaf.data.toy import sample2d
from bnaf.flows.glow import Glow
from bnaf.flows.planar import PlanarFlow, PlanarStack
from bnaf.toy.fit import CHUNK, FreshBatches, Member, Noise, fit
from bnaf.toy.optimise import PackOptimiser
from bnaf.toy.pack import Pack
from bnaf.toy.params import Optimiser


def _planar(flows: int, seed: int) -> PlanarFlow:
    torch.manual_seed(seed)
    model = PlanarFlow(2, flows=flows, init_std=1.0)  # large weights: tanh far from linear
    with torch.no_grad():
        model.b.normal_()
    return model


def train(model, loss_fn, opt: Optimiser, log_every: int, folder: Path) -> list[dict]:
    """The toy loop without checkpoints in between (one at the end, in ``folder``):
    ``loss_fn(forward, step)`` with ``forward(x) -> (z, log_det)`` the pack's forward pass."""
    quiet = Checkpoint(folder, "test", log=lambda _: None)
    member = Member(model, quiet, Noise(torch.Generator()), opt)
    pack = Pack([model])
    optimiser = PackOptimiser(pack.params, opt, 1, pack.stacked)

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, log_det = pack.forward(x[None])
        return z[0], log_det[0]

    done = fit([member], optimiser, lambda step: loss_fn(forward, step).reshape(1), log_every,
               10**9, log=str)  # fmt: skip
    return done[0]["history"]


@pytest.mark.parametrize("flows", [1, 3, 32])
def test_planar_stack_equals_layer_by_layer_autograd(flows: int) -> None:
    model = _planar(flows, seed=flows)
    z = torch.randn(64, 2)
    weights = torch.randn(64)  # a loss that weighs samples unequally, as no test shortcut would
    fast, ref = model(z), model.forward_reference(z)
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)

    def grads(out: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
        x, log_det = out
        loss = (weights * (x.square().sum(-1) - log_det)).sum()
        return list(torch.autograd.grad(loss, [model.u, model.w, model.b]))

    for a, b in zip(grads(model(z)), grads(model.forward_reference(z))):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_planar_stack_gradcheck_including_the_input() -> None:
    torch.manual_seed(0)
    k = 4
    m = 3  # a pack of three flows
    z = torch.randn(m, 10, 2, requires_grad=True)
    w, u = torch.randn(m, k, 2, requires_grad=True), torch.randn(m, k, 2, requires_grad=True)
    b = torch.randn(m, k, requires_grad=True)
    assert torch.autograd.gradcheck(PlanarStack.apply, (z, w, u, b))


def _reference_training(model: PlanarFlow, opt: Optimiser, draws: list[torch.Tensor]) -> None:
    r"""The recipe written plainly: RMSProp, clipping, plateau schedule, reference forward."""
    params = list(model.parameters())
    optimiser = torch.optim.RMSprop(params, lr=opt.lr, momentum=opt.momentum, foreach=False)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimiser, factor=opt.decay, patience=opt.patience, min_lr=opt.min_lr,
        threshold=opt.threshold, threshold_mode="abs",
    )  # fmt: skip
    for z in draws:
        x, log_det = model.forward_reference(z)
        loss = (standard_normal_log_prob(z) - log_det + 0.5 * x.square().sum(-1)).mean()
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_norm=opt.clip_norm, foreach=False)
        optimiser.step()
        scheduler.step(loss.item())


def test_planar_training_steps_equal_the_reference_loop(tmp_path: Path) -> None:
    # patience 3 so that the plateau schedule acts within the few steps compared
    opt = Optimiser(
        name="rmsprop", lr=1e-2, amsgrad=False, momentum=0.9, decay=0.5, patience=3,
        min_lr=1e-5, threshold=10.0, clip_norm=1.0, iterations=12, batch_size=50,
    )  # fmt: skip
    torch.manual_seed(1)
    draws = [torch.randn(opt.batch_size, 2) for _ in range(opt.iterations)]
    # the recipe's initialisation (init_std 0.1): with saturated layers some gradients are
    # ~1e-10, and RMSProp's g / (sqrt(v) + 1e-8) would magnify their rounding a hundred million
    # times, comparing rounding noise rather than the two paths
    torch.manual_seed(5)
    fast = PlanarFlow(2, flows=32)
    ref = PlanarFlow(2, flows=32)
    ref.load_state_dict(fast.state_dict())

    def loss_fn(forward, step: int) -> torch.Tensor:
        z = draws[step - 1]
        x, log_det = forward(z)
        return (standard_normal_log_prob(z) - log_det + 0.5 * x.square().sum(-1)).mean()

    history = train(fast, loss_fn, opt, opt.iterations, tmp_path)
    _reference_training(ref, opt, draws)
    assert history[-1]["lr"] < opt.lr  # the schedule did decay, in both loops alike
    for a, b in zip(fast.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_glow_fast_forward_equals_step_by_step() -> None:
    torch.manual_seed(0)
    model = Glow(2, depth=6, hidden=8, seed=3)
    model(torch.randn(300, 2) * 2 + 1)  # first training batch: actnorm initialisation
    with torch.no_grad():
        for p in model.parameters():  # move off the identity start
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(40, 2)
    fast, ref = model(x), model.forward_reference(x)
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    params = list(model.parameters())
    g_fast = torch.autograd.grad(fast[1].sum() + fast[0].square().sum(), params)
    g_ref = torch.autograd.grad(ref[1].sum() + ref[0].square().sum(), params)
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_glow_first_training_batch_initialises_every_actnorm() -> None:
    model = Glow(2, depth=4, hidden=8)
    with torch.no_grad():
        model.w3.normal_()  # couplings that move their input: each step sees new statistics
    x = torch.randn(100, 2) * 3 + 1
    model(x)
    assert bool(model.initialised)
    with torch.no_grad():
        for k in range(4):  # each step's actnorm output has zero mean and unit variance
            h = (x + model.bias[k]) * model.log_scale[k].exp()
            torch.testing.assert_close(h.mean(0), torch.zeros(2), rtol=0, atol=1e-6)
            torch.testing.assert_close(h.std(0), torch.ones(2), rtol=0, atol=1e-4)
            x = model._couple(k, h @ model.weight[k].T)[0]


@pytest.mark.float32
def test_density_batches_are_fresh_and_drawn_in_chunks() -> None:
    batch = 7
    batch_for = FreshBatches("8gaussians", batch, np.random.default_rng(11))
    got = torch.stack([batch_for(step) for step in range(1, 2 * CHUNK + 1)])
    rng = np.random.default_rng(11)
    want = np.concatenate([sample2d("8gaussians", batch * CHUNK, rng) for _ in range(2)])
    np.testing.assert_allclose(got.reshape(-1, 2).numpy(), want.astype(np.float32))
    assert got.dtype == torch.float32
    # every step's batch is new: no two steps share a point
    assert len(np.unique(got.reshape(-1, 2).numpy(), axis=0)) == 2 * CHUNK * batch


def test_non_finite_loss_stops_training_with_its_iteration(tmp_path: Path) -> None:
    from bnaf.core.errors import BnafError

    model = PlanarFlow(2, flows=2)
    opt = Optimiser(
        name="adam", lr=1e-3, amsgrad=True, momentum=0.0, decay=0.5, patience=10,
        min_lr=0.0, threshold=0.0, clip_norm=None, iterations=5, batch_size=4,
    )  # fmt: skip

    def loss_fn(forward, step: int) -> torch.Tensor:
        x, log_det = forward(torch.randn(4, 2))
        return (x.sum() - log_det.sum()) * (float("nan") if step == 3 else 1.0)

    with pytest.raises(BnafError, match="iteration 3"):
        train(model, loss_fn, opt, 100, tmp_path)
