"""Properties of the B-NAF flow (Section 3, Eq. 7-11, Appendix C-D), in float64.

Every configuration axis is covered: dimension, depth, hidden factor, residual mode, final
residual, activation, initialisation, permutation and batch size. The full product of the
first five is run; the last four are drawn per case from a seeded generator so that each
value meets each dimension and residual mode without the product's cost.
"""

from __future__ import annotations

import doctest
import itertools
import math
import random

import pytest
import torch

import bnaf.flows.chain
import bnaf.flows.layers
from bnaf.flows import (
    BNAF,
    BlockFlow,
    LeakyReLU,
    MaskedBlockLinear,
    Tanh,
    load_flow,
    logjac,
    save_flow,
)
from bnaf.flows.chain import chain_scaled
from bnaf.flows.logjac import fallback_decision, log_matvec

DIMS, LAYERS, FACTORS = (1, 2, 5), (1, 2, 3), (1, 3)
RESIDUALS, FINALS = ("none", "normal", "gated"), (False, True)
_rng = random.Random(0)
CASES = [
    dict(
        dim=d,
        layers=L,
        hidden_factor=k,
        residual=r,
        final_residual=fr,
        activation=_rng.choice(["tanh", "leakyrelu"]),
        init=_rng.choice(["authors", "paper"]),
        permutation=_rng.choice(["flip", "random"]),
        batch=_rng.choice([1, 4]),
    )
    for d, L, k, r, fr in itertools.product(DIMS, LAYERS, FACTORS, RESIDUALS, FINALS)
]


def _ids(case: dict) -> str:
    return "-".join(str(v) for v in case.values())


def _model(case: dict, flows: int = 2, seed: int = 0) -> BNAF:
    torch.manual_seed(seed)
    kwargs = {k: v for k, v in case.items() if k != "batch"}
    return BNAF(flows=flows, seed=seed, **kwargs).double()


def _per_sample_jacobian(fn, x: torch.Tensor) -> torch.Tensor:
    """``(n, d, d)`` Jacobians of a map applied row-wise to ``x``."""
    jac = torch.autograd.functional.jacobian(fn, x)  # (n, d, n, d)
    n = x.shape[0]
    return jac[torch.arange(n), :, torch.arange(n), :]


def test_cases_cover_every_value() -> None:
    for key, values in [
        ("activation", {"tanh", "leakyrelu"}),
        ("init", {"authors", "paper"}),
        ("permutation", {"flip", "random"}),
        ("batch", {1, 4}),
    ]:
        for d in DIMS:
            assert {c[key] for c in CASES if c["dim"] == d} == values, (key, d)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_log_det_and_log_prob(case: dict) -> None:
    model = _model(case)
    x = torch.randn(case["batch"], case["dim"])
    z, log_det = model(x)
    jac = _per_sample_jacobian(lambda v: model(v)[0], x)
    sign, logabs = torch.linalg.slogdet(jac)
    # each flow is increasing in its own variable: only the permutations change orientation
    eye = torch.eye(case["dim"])
    parity = math.prod(torch.linalg.det(eye[t.perm]).item() for t in model.transforms[1::2])
    assert torch.all(sign == parity)
    torch.testing.assert_close(log_det, logabs)
    base = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(model.log_prob(x), base + log_det)


@pytest.mark.parametrize("case", CASES[::3], ids=_ids)
def test_block_flow_is_autoregressive(case: dict) -> None:
    """A single flow's Jacobian is lower triangular with a positive diagonal, and the log
    diagonal it reports is the log of that diagonal (Eq. 9-11)."""
    torch.manual_seed(1)
    args = (case["dim"], case["layers"], case["hidden_factor"], case["residual"])
    flow = BlockFlow(*args, activation=case["activation"], init=case["init"]).double()
    x = torch.randn(case["batch"], case["dim"])
    for fn in (lambda v: flow(v)[0], lambda v: flow.transform(v)[0]):
        jac = _per_sample_jacobian(fn, x)
        assert torch.all(jac.triu(1) == 0)
        assert torch.all(jac.diagonal(dim1=-2, dim2=-1) > 0)
    jac_f = _per_sample_jacobian(lambda v: flow.transform(v)[0], x)
    torch.testing.assert_close(flow.transform(x)[1], jac_f.diagonal(dim1=-2, dim2=-1).log())
    jac = _per_sample_jacobian(lambda v: flow(v)[0], x)
    torch.testing.assert_close(flow(x)[1], jac.diagonal(dim1=-2, dim2=-1).log().sum(-1))


@pytest.mark.parametrize("dim,b,a", [(1, 1, 3), (4, 1, 3), (4, 3, 3), (4, 3, 1), (3, 2, 5)])
@pytest.mark.parametrize("init", ["authors", "paper"])
def test_masked_block_linear_structure(dim: int, b: int, a: int, init: str) -> None:
    torch.manual_seed(0)
    layer = MaskedBlockLinear(dim, b, a, init).double()
    w, log_diag = layer.weights()
    assert w.shape == (dim * a, dim * b) and log_diag.shape == (dim, a, b)
    blocks = w.view(dim, a, dim, b).permute(0, 2, 1, 3)  # (row block, col block, a, b)
    for i, j in itertools.product(range(dim), repeat=2):
        if j > i:
            assert torch.all(blocks[i, j] == 0)
        elif j == i:
            assert torch.all(blocks[i, i] > 0)
            torch.testing.assert_close(log_diag[i], blocks[i, i].log())
    # the rows are weight-normalised: ||w_r|| = exp(s_r) (Appendix C)
    torch.testing.assert_close(w.norm(dim=-1), layer.log_scale.exp().squeeze(-1))
    x = torch.randn(5, dim * b)
    y, log_diag2 = layer(x)
    torch.testing.assert_close(y, x @ w.T + layer.bias)
    torch.testing.assert_close(log_diag2, log_diag)
    assert layer.structural_zeros == a * b * dim * (dim - 1) // 2


def _naive_log_matvec(log_a: torch.Tensor, log_g: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(log_a.unsqueeze(0) + log_g.unsqueeze(-2), dim=-1)


@pytest.mark.parametrize("d,p,q,n", [(1, 1, 1, 1), (3, 4, 5, 6), (5, 1, 7, 2), (2, 6, 1, 3)])
@pytest.mark.parametrize("spread", [1.0, 30.0, 1000.0])
def test_log_matvec_equals_logsumexp(d: int, p: int, q: int, n: int, spread: float) -> None:
    torch.manual_seed(0)
    log_a = (spread * torch.randn(d, p, q)).requires_grad_()
    log_g = (spread * torch.randn(n, d, q)).requires_grad_()
    out, ref = log_matvec(log_a, log_g), _naive_log_matvec(log_a, log_g)
    torch.testing.assert_close(out, ref)
    w = torch.randn_like(ref)
    grads = torch.autograd.grad((out * w).sum(), (log_a, log_g))
    refs = torch.autograd.grad((ref * w).sum(), (log_a, log_g))
    for g, r in zip(grads, refs):
        torch.testing.assert_close(g, r)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_matvec_underflow_fallback(dtype: torch.dtype) -> None:
    """The maxima of the two factors sit at different ``q``: each product term is about
    ``exp(-1000)``, which the factorised fast path would round to zero (log = -inf)."""
    log_a = torch.tensor([[[0.0, -1000.0]]], dtype=dtype)  # (d=1, p=1, q=2)
    log_g = torch.tensor([[[-1000.0, 0.0]]], dtype=dtype)  # (n=1, d=1, q=2)
    out = log_matvec(log_a, log_g)
    expected = torch.tensor([[[-1000.0 + math.log(2.0)]]], dtype=dtype)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out, _naive_log_matvec(log_a, log_g))


@pytest.mark.parametrize("where", ["host", "device"])
def test_log_matvec_near_underflow_is_exact(where: str) -> None:
    """Each term is exp(-100), about 4e-44: representable in float32 only as a subnormal with
    two significant digits, so a sum that small must come from the exact log-domain product,
    not from the factorised fast one (which would be off by about 2%, 0.02 nats)."""
    log_a = torch.tensor([[[0.0, -100.0]]], dtype=torch.float32)  # (d=1, p=1, q=2)
    log_g = torch.tensor([[[-100.0, 0.0]]], dtype=torch.float32)  # (n=1, d=1, q=2)
    with fallback_decision(where):
        out = log_matvec(log_a, log_g)
    expected = torch.tensor([[[-100.0 + math.log(2.0)]]], dtype=torch.float32)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("p", [1, 4])
def test_log_matvec_stays_fast_whatever_the_scale_of_each_row(p: int, monkeypatch) -> None:
    """The fast product shifts each block row of the weights and each sample's blocks by their
    own maxima, so rows and samples thousands of nats apart (as in a deep flow's Jacobian) stay
    on it; the chunked exact product is only for terms spread within one sum."""

    def refuse(*args, **kwargs):
        raise AssertionError("the exact product was used for a well-conditioned product")

    torch.manual_seed(1)
    d, q, n = 3, 5, 4
    rows = 300.0 * torch.arange(d * p, dtype=torch.float64).view(d, p, 1)
    samples = 250.0 * torch.arange(n * d, dtype=torch.float64).view(n, d, 1)
    log_a = (torch.randn(d, p, q, dtype=torch.float64) + rows).requires_grad_()
    log_g = (torch.randn(n, d, q, dtype=torch.float64) - samples).requires_grad_()
    ref = _naive_log_matvec(log_a, log_g)
    w = torch.randn_like(ref)
    refs = torch.autograd.grad((ref * w).sum(), (log_a, log_g))
    monkeypatch.setattr(logjac, "exact_log_matvec", refuse)
    monkeypatch.setattr(logjac, "_exact_grads", refuse)
    with fallback_decision("host"):
        out = log_matvec(log_a, log_g)
        grads = torch.autograd.grad((out * w).sum(), (log_a, log_g))
    torch.testing.assert_close(out, ref)
    for g, r in zip(grads, refs):
        torch.testing.assert_close(g, r)


@pytest.mark.parametrize("residual", RESIDUALS)
@pytest.mark.parametrize("final_residual", FINALS)
def test_every_parameter_gets_a_gradient(residual: str, final_residual: bool) -> None:
    case = dict(dim=3, layers=2, hidden_factor=2, residual=residual, final_residual=final_residual)
    model = _model(case, flows=3)
    loss = -model.log_prob(torch.randn(16, 3)).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    # structural zeros (above the block diagonal) are unused: their gradient is exactly zero,
    # which is why the paper's convention leaves them out of the count.
    for m in model.modules():
        if isinstance(m, MaskedBlockLinear):
            unused = ~(m.mask_d | m.mask_o)
            assert torch.all(m.weight.grad[unused] == 0)


def test_train_and_eval_agree() -> None:
    model = _model(dict(dim=4, layers=2, hidden_factor=3, residual="gated"), flows=3)
    x = torch.randn(7, 4)
    z_train, ld_train = model.train()(x)
    z_eval, ld_eval = model.eval()(x)
    assert torch.equal(z_train, z_eval) and torch.equal(ld_train, ld_eval)


@pytest.mark.parametrize("permutation", ["flip", "random"])
def test_state_dict_and_save_flow_round_trip(tmp_path, permutation: str) -> None:
    case = dict(dim=4, layers=2, hidden_factor=2, permutation=permutation, final_residual=True)
    model = _model(case, flows=3, seed=3)
    x = torch.randn(5, 4)
    other = _model(case, flows=3, seed=3)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    assert not torch.allclose(other(x)[0], model(x)[0])
    other.load_state_dict(model.state_dict())
    for a, b in zip(other(x), model(x)):
        assert torch.equal(a, b)

    save_flow(model, tmp_path / "model.pt", step=7)
    loaded = load_flow(tmp_path / "model.pt")
    assert loaded.config == model.config
    assert torch.load(tmp_path / "model.pt", weights_only=False)["step"] == 7
    for a, b in zip(loaded(x), model(x)):
        assert torch.equal(a, b)


def test_random_permutation_is_seeded() -> None:
    a = BNAF(6, flows=4, permutation="random", seed=5)
    b = BNAF(6, flows=4, permutation="random", seed=5)
    perms = [t.perm for t in a.transforms[1::2]]
    assert all(torch.equal(p, q.perm) for p, q in zip(perms, b.transforms[1::2]))
    assert all(sorted(p.tolist()) == list(range(6)) for p in perms)
    for t in a.transforms[1::2]:
        x = torch.randn(3, 6)
        assert torch.equal(t.inverse(t(x)[0]), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes(dtype: torch.dtype) -> None:
    ref = _model(dict(dim=5, layers=2, hidden_factor=3), flows=3)
    model = _model(dict(dim=5, layers=2, hidden_factor=3), flows=3).to(dtype)
    x = torch.randn(8, 5)
    z, log_det = model(x.to(dtype))
    assert z.dtype == dtype and log_det.dtype == dtype
    z_ref, ld_ref = ref(x)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else {}
    torch.testing.assert_close(z.double(), z_ref, **tol)
    torch.testing.assert_close(log_det.double(), ld_ref, **tol)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda() -> None:
    model = _model(dict(dim=5, layers=2, hidden_factor=3), flows=3)
    x = torch.randn(8, 5)
    z_ref, ld_ref = model(x)
    model = model.to("cuda")
    z, log_det = model(x.cuda())
    torch.testing.assert_close(z.cpu(), z_ref)
    torch.testing.assert_close(log_det.cpu(), ld_ref)


@pytest.mark.parametrize("residual", RESIDUALS)
@pytest.mark.parametrize("activation", ["tanh", "leakyrelu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_for_large_inputs(residual: str, activation: str, dtype: torch.dtype) -> None:
    case = dict(dim=4, layers=2, hidden_factor=3, residual=residual, activation=activation)
    model = _model(case, flows=3).to(dtype)
    x = (1e3 * torch.randn(6, 4)).to(dtype).requires_grad_()
    z, log_det = model(x)
    assert torch.isfinite(z).all() and torch.isfinite(log_det).all()
    (z.square().sum() - log_det.sum()).backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("residual", ["normal", "gated"])
def test_density_integrates_to_one_in_1d(residual: str) -> None:
    """With a residual on every flow the map is onto R and p(x) integrates to 1; without it
    on the last flow (the authors' choice) the image is bounded and mass can only be lost."""
    x = torch.linspace(-300.0, 300.0, 600_001)[:, None]
    case = dict(dim=1, layers=2, hidden_factor=3, residual=residual)
    with torch.no_grad():
        p_onto = _model({**case, "final_residual": True}, flows=2).log_prob(x).exp()
        p_last = _model({**case, "final_residual": False}, flows=2).log_prob(x).exp()
    assert torch.trapezoid(p_onto, x[:, 0]).item() == pytest.approx(1.0, abs=1e-4)
    assert torch.trapezoid(p_last, x[:, 0]).item() <= 1.0 + 1e-4


def test_last_flow_has_no_residual_unless_asked() -> None:
    flows = [t for t in BNAF(3, flows=3).transforms if isinstance(t, BlockFlow)]
    assert [f.residual for f in flows] == ["gated", "gated", "none"]
    flows = [t for t in BNAF(3, flows=3, final_residual=True).transforms[::2]]
    assert [f.residual for f in flows] == ["gated"] * 3


@pytest.mark.parametrize(
    "kwargs",
    [dict(residual="skip"), dict(activation="relu"), dict(init="xavier"), dict(permutation="x")],
)
def test_bad_arguments_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        BNAF(3, **kwargs)


def test_doctests() -> None:
    assert doctest.testmod(bnaf.flows.layers).failed == 0


@pytest.mark.parametrize("case", CASES[::4], ids=_ids)
@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_scaled_and_log_domain_chains_agree(case: dict, scale: float) -> None:
    """The fast chain (linear domain with a log-scale) and the log-domain chain of Eq. 10-11
    give the same values and gradients."""
    torch.manual_seed(2)
    args = (case["dim"], case["layers"], case["hidden_factor"], case["residual"])
    flow = BlockFlow(*args, activation=case["activation"], init=case["init"]).double()
    x = (scale * torch.randn(6, case["dim"])).requires_grad_()
    fast = flow._transform_scaled(x)
    assert fast is not None
    slow = flow._transform_log(x)
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b)
    params = [x, *flow.parameters()]
    g_fast = torch.autograd.grad(fast[1].sum() + fast[0].sum(), params, allow_unused=True)
    g_slow = torch.autograd.grad(slow[1].sum() + slow[0].sum(), params, allow_unused=True)
    for a, b in zip(g_fast, g_slow):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_saturated_units_fall_back_to_the_log_domain(dtype: torch.dtype) -> None:
    """d=1, L=1, k=1: log f'(x) = log w2 + log tanh'(w1 x + b1) + log w1, with
    log tanh'(h) = log 4 - 2|h| - 2 log1p(exp(-2|h|)); at |h| ~ 600 the derivative itself
    underflows in both dtypes, so the fast chain gives up and the exact one answers."""
    flow = BlockFlow(1, layers=1, hidden_factor=1, residual="none").to(dtype)
    w1, _ = flow.linears[0].weights()
    x = (600.0 / w1.detach().abs().squeeze()).reshape(1, 1) * torch.ones(1, 1, dtype=dtype)
    assert flow._transform_scaled(x) is None
    y, log_diag = flow.transform(x)
    with torch.no_grad():
        w2 = flow.linears[1].weights()[0]
        h = (x * w1 + flow.linears[0].bias).abs().double()
        log_tanh_d = math.log(4.0) - 2 * h - 2 * torch.log1p(torch.exp(-2 * h))
        expected = (w2.log() + w1.log()).double().squeeze() + log_tanh_d.squeeze()
    assert torch.isfinite(log_diag).all()
    torch.testing.assert_close(log_diag.double().squeeze(), expected, rtol=1e-6, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_activations_and_their_derivatives(dtype: torch.dtype) -> None:
    x = torch.cat([torch.linspace(-30, 30, 2001), torch.tensor([0.0, 1e-8, -1e3, 1e3])])
    x = x.to(dtype)
    eps = torch.finfo(dtype).eps
    ref = torch.tanh(x.double())
    ref_d = 4 * torch.exp(-2 * x.double().abs()) / (1 + torch.exp(-2 * x.double().abs())) ** 2
    y, log_d = Tanh()(x)
    y2, dy = Tanh().with_derivative(x)
    torch.testing.assert_close(y.double(), ref, rtol=0, atol=4 * eps)
    torch.testing.assert_close(y2, y)
    torch.testing.assert_close(dy.double(), ref_d, rtol=8 * eps, atol=0)
    finite = ref_d > 0
    torch.testing.assert_close(
        log_d.double()[finite], ref_d.log()[finite], rtol=8 * eps, atol=8 * eps
    )
    # gradients of both forms against the analytic derivatives
    xg = x.clone().requires_grad_()
    y, log_d = Tanh()(xg)
    (gy,) = torch.autograd.grad(y.sum(), xg)
    (gl,) = torch.autograd.grad(Tanh()(xg)[1].sum(), xg)
    # exp(log tanh'): the log's absolute error (~eps |log tanh'|, up to 60 eps) becomes relative
    torch.testing.assert_close(gy.double(), ref_d, rtol=256 * eps, atol=0)
    torch.testing.assert_close(gl.double(), -2 * ref, rtol=0, atol=8 * eps)
    (gd,) = torch.autograd.grad(Tanh().with_derivative(xg)[1].sum(), xg)
    torch.testing.assert_close(gd.double(), -2 * ref * ref_d, rtol=16 * eps, atol=8 * eps)
    leaky = LeakyReLU(0.1)
    y, log_d = leaky(x)
    y2, dy = leaky.with_derivative(x)
    torch.testing.assert_close(y, torch.where(x >= 0, x, 0.1 * x))
    torch.testing.assert_close(dy, log_d.exp())


@pytest.mark.parametrize("dim,b,a", [(1, 1, 1), (4, 1, 3), (3, 2, 4), (4, 3, 1)])
def test_fused_weights_match_plain_autograd(dim: int, b: int, a: int) -> None:
    """MaskedBlockLinear.weights (one hand-differentiated node) against Eq. 8 + Appendix C
    written with plain autograd operations: values and gradients."""
    torch.manual_seed(0)
    layer = MaskedBlockLinear(dim, b, a).double()
    with torch.no_grad():
        layer.weight.add_(torch.randn_like(layer.weight))
        layer.log_scale.add_(torch.randn_like(layer.log_scale))
    w, log_diag = layer.weights()
    weight, s = layer.weight, layer.log_scale
    v = torch.where(layer.mask_d, weight.exp(), weight * layer.mask_o)
    w_ref = s.exp() * v / v.norm(dim=-1, keepdim=True)
    blocks = w_ref.view(dim, a, dim, b)
    log_diag_ref = torch.stack([blocks[i, :, i, :] for i in range(dim)]).log()
    torch.testing.assert_close(w, w_ref)
    torch.testing.assert_close(log_diag, log_diag_ref)
    gw, gd = torch.randn_like(w), torch.randn_like(log_diag)
    grads = torch.autograd.grad((w * gw).sum() + (log_diag * gd).sum(), (weight, s))
    refs = torch.autograd.grad((w_ref * gw).sum() + (log_diag_ref * gd).sum(), (weight, s))
    for g, r in zip(grads, refs):
        torch.testing.assert_close(g, r)


@pytest.mark.parametrize("residual", ["none", "normal", "gated"])
@pytest.mark.parametrize("activation", ["tanh", "leakyrelu"])
def test_empty_batch(residual: str, activation: str) -> None:
    # A batch with no rows (e.g. every point rejected by a mask) maps to empty outputs.
    model = BNAF(3, flows=2, layers=2, hidden_factor=2, residual=residual, activation=activation)
    z, log_det = model(torch.zeros(0, 3))
    assert z.shape == (0, 3) and log_det.shape == (0,)
    assert model.log_prob(torch.zeros(0, 3)).shape == (0,)


def test_leaky_relu_needs_a_positive_slope() -> None:
    with pytest.raises(ValueError, match="invertible"):
        LeakyReLU(0.0)  # a flat half-line: not invertible, log-derivative -inf
    assert LeakyReLU(1e-3).negative_slope == 1e-3


def test_block_flow_takes_the_scaled_chain_on_the_cpu(monkeypatch) -> None:
    """Away from saturation the CPU computes the log-Jacobian by the linear-domain (scaled)
    chain, one log at the end; the log-domain chain is its fallback, not the default."""
    torch.manual_seed(0)
    flow = BlockFlow(3, layers=2, hidden_factor=4)
    x = torch.randn(16, 3)
    y_ref, log_ref = flow._transform_log(x)

    def refuse(*args, **kwargs):
        raise AssertionError("the log-domain chain was used for well-conditioned units")

    monkeypatch.setattr(bnaf.flows.chain, "chain_log", refuse)
    with fallback_decision("host"):
        y, log_g = flow.transform(x)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(log_g, log_ref)


def _two_units_at(u: float) -> BlockFlow:
    """A float32 flow of one dimension whose two tanh units both see ``u`` at input ``u``:
    1 x 1 blocks with ``w = exp(log_scale) = 1``, the second layer's bias ``u - tanh(u)``
    (about ``u - 1``), no residual; its Jacobian is ``tanh'(u)^2``."""
    flow = BlockFlow(1, layers=2, hidden_factor=1, residual="none").float()
    with torch.no_grad():
        for linear in flow.linears:
            linear.log_scale.zero_()
            linear.bias.zero_()
        flow.linears[1].bias.fill_(u - 1.0)  # tanh(u) = 1 in float32 for these u
    return flow


def test_units_saturated_to_a_subnormal_jacobian_fall_back() -> None:
    """float32: two units at 25.5 each have tanh' = 4 exp(-51), about 3e-22, so their chained
    Jacobian is about 8e-44, a subnormal of some 56 units in the last place (1% off). The scaled
    chain must hand it to the log-domain chain, which gives 2 log tanh'(25.5) = 4 (log 2 - 25.5
    - log1p(exp(-51))) to float32 precision."""
    flow = _two_units_at(25.5)
    x = torch.tensor([[25.5]], dtype=torch.float32)
    _, log_g = flow.transform(x)
    expected = 4 * (math.log(2.0) - 25.5 - math.log1p(math.exp(-51.0)))
    assert abs(log_g.item() - expected) < 1e-4


class _LogDerivativeOnly(torch.nn.Module):
    """A user's activation that gives ``(y, log dy/dx)`` only, without ``with_derivative``."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return Tanh()(x)


@pytest.mark.parametrize("where", ["host", "device"])
def test_an_activation_without_a_linear_derivative_takes_the_log_chain(where: str) -> None:
    """The scaled chain needs each activation's derivative in the linear domain; an activation
    that gives only its log-derivative is chained in the log domain, wherever the fallback is
    decided, and gives the same flow as the built-in one."""
    torch.manual_seed(0)
    flow = BlockFlow(3, layers=2, hidden_factor=2)
    x = torch.randn(8, 3)
    acts = [_LogDerivativeOnly() for _ in flow.activations]
    with fallback_decision(where):
        y, log_g = bnaf.flows.chain.chain(x, list(flow.linears), acts, 3)
    y_ref, log_ref = flow._transform_log(x)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    torch.testing.assert_close(log_g, log_ref, rtol=0, atol=0)


def test_scaled_chain_keeps_its_margin_above_underflow() -> None:
    """The scaled chain hands a Jacobian over to the log-domain chain within a factor
    1/sqrt(tiny) of underflow, not only at it: there, terms flushed to zero (flush-to-zero
    arithmetic, or terms below the smallest subnormal) could be a large part of the sum. Two
    units at 15 give 16 exp(-60), about 1.4e-25 in float32: normal, far above float32's
    smallest normal (1.2e-38), but below its square root (1.1e-19)."""
    flow = _two_units_at(15.0)
    near = torch.tensor([[15.0]], dtype=torch.float32)
    fine = torch.tensor([[0.0]], dtype=torch.float32)
    assert flow._transform_scaled(near) is None
    assert flow._transform_scaled(fine) is not None
    both = torch.cat([near, fine])
    _, deferred = chain_scaled(both, list(flow.linears), list(flow.activations), 1, defer=True)
    assert torch.isnan(deferred[0]).all() and torch.isfinite(deferred[1]).all()
    _, log_g = flow.transform(both)
    expected = 4 * (math.log(2.0) - 15.0 - math.log1p(math.exp(-30.0)))
    assert abs(log_g[0].item() - expected) < 1e-4
    torch.testing.assert_close(log_g[1], flow._transform_scaled(fine)[1][0], rtol=0, atol=0)


@pytest.mark.parametrize("sizes", [(0, 1, 2), (2, 0, 2), (2, 1, 0)])
def test_block_flow_refuses_an_empty_size(sizes: tuple[int, int, int]) -> None:
    dim, layers, hidden_factor = sizes
    with pytest.raises(ValueError, match=">= 1"):
        BlockFlow(dim, layers, hidden_factor)
