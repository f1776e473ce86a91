"""The amortised B-NAF posterior (Section 5.4) and the VAE around it, in float64."""

from __future__ import annotations

import pytest
import torch

from bnaf.flows import BlockFlow
from bnaf.flows.amortised import AmortisedBlockFlow, AmortisedBNAF
from bnaf.vae.model import VAE

CASES = [
    (3, 1, 1, 2, "gated"),
    (4, 2, 1, 3, "normal"),
    (3, 3, 2, 2, "gated"),
    (5, 2, 2, 1, "none"),
]


@pytest.mark.parametrize("dim, flows, layers, factor, residual", CASES)
def test_log_det_matches_autograd_per_datapoint(dim, flows, layers, factor, residual):
    torch.manual_seed(0)
    flow = AmortisedBNAF(
        dim,
        flows=flows,
        layers=layers,
        hidden_factor=factor,
        residual=residual,
        final_residual=True,
    )
    z = torch.randn(4, dim)
    # per-datapoint b, log v1, log v2; moderate, so the reference Jacobian is well conditioned
    theta = 0.5 * torch.randn(4, flow.n_amortised)
    _, log_det = flow(z, theta)
    for i in range(4):
        t = theta[i : i + 1]
        jac = torch.autograd.functional.jacobian(lambda v, t=t: flow(v[None], t)[0][0], z[i])
        sign, logabs = torch.linalg.slogdet(jac)
        assert sign > 0
        torch.testing.assert_close(log_det[i], logabs, rtol=1e-9, atol=1e-9)


def test_single_flow_is_autoregressive():
    torch.manual_seed(1)
    block = AmortisedBlockFlow(4, layers=2, hidden_factor=3, residual="none")
    theta = torch.randn(1, block.n_amortised)
    jac = torch.autograd.functional.jacobian(lambda v: block(v[None], theta)[0][0], torch.randn(4))
    assert torch.all(jac.triu(1) == 0) and torch.all(torch.diagonal(jac) > 0)


def test_unit_scales_reduce_to_the_shared_block_flow():
    # With v1 = v2 = 1 and b equal to a BlockFlow's bias, the amortised layer is that flow.
    torch.manual_seed(2)
    plain = BlockFlow(3, layers=1, hidden_factor=4, residual="gated")
    amortised = AmortisedBlockFlow(3, layers=1, hidden_factor=4, residual="gated")
    amortised.load_state_dict(plain.state_dict(), strict=False)
    theta = torch.cat(
        [torch.cat([lin.bias, torch.zeros(2 * n + m - n)]) for lin, (n, m) in
         zip(plain.linears, amortised.sizes)]
    )[None].expand(5, -1)  # fmt: skip
    x = torch.randn(5, 3)
    y0, ld0 = plain(x)
    y1, ld1 = amortised(x, theta)
    torch.testing.assert_close(y0, y1)
    torch.testing.assert_close(ld0, ld1)


def test_per_datapoint_scaling_changes_the_map():
    torch.manual_seed(3)
    flow = AmortisedBNAF(4, flows=2, hidden_factor=2)
    z = torch.randn(1, 4).expand(2, -1)
    theta = torch.zeros(2, flow.n_amortised)
    y, ld = flow(z, theta)
    torch.testing.assert_close(y[0], y[1])
    for part in range(3):  # b, log v1, log v2 of the first layer each change the output
        n, m = flow.transforms[0].sizes[0]
        lo, hi = [(0, n), (n, 2 * n), (2 * n, 2 * n + m)][part]
        t = theta.clone()
        t[1, lo:hi] = 0.7
        y, ld = flow(z, t)
        assert not torch.allclose(y[0], y[1])
        if part:  # the scales enter the Jacobian too
            assert not torch.allclose(ld[0], ld[1])


def test_theta_shape_is_checked():
    flow = AmortisedBNAF(4, flows=2, hidden_factor=2)
    with pytest.raises(ValueError, match="theta has shape"):
        flow(torch.randn(3, 4), torch.zeros(3, flow.n_amortised + 1))


@pytest.mark.parametrize(
    "shape, likelihood", [((1, 28, 28), "bernoulli"), ((1, 28, 20), "categorical")]
)
def test_gradients_reach_encoder_heads_and_flow(shape, likelihood):
    torch.manual_seed(4)
    model = VAE(shape, likelihood, latent=8, flow=AmortisedBNAF(8, flows=2, hidden_factor=2))
    x = torch.randint(0, 256, (2, *shape)) / 255.0
    if likelihood == "bernoulli":
        x = torch.bernoulli(x)
    log_px, kl = model.terms(x)
    assert log_px.shape == kl.shape == (2,)
    (-log_px + kl).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert model.amortise.weight.grad.abs().sum() > 0  # the amortisation head
    flow_params = dict(model.flow.named_parameters())
    assert all("bias" not in k for k in flow_params)  # biases are predicted, not shared
