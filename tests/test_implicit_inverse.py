"""Gradients of the B-NAF inverse by the implicit function theorem (bnaf/flows/implicit.py),
checked against central finite differences of the root search itself in float64
(``torch.autograd.gradcheck``): with respect to the points, to every parameter of the flow,
and for the amortised / conditional flow to ``theta`` and to the context."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from bnaf.flows import BNAF, AmortisedBNAF, ConditionalBNAF
from bnaf.flows.implicit import differentiable_invert, implicit_inverse

pytestmark = pytest.mark.usefixtures("one_thread")

# xtol 1e-13: the finite differences (eps 1e-6) must see the map, not the search's tolerance
XTOL = 1e-13
CONFIGS = {
    "authors (bounded)": dict(),
    "final residual": dict(final_residual=True, layers=2),
    "leakyrelu, no residual": dict(residual="none", activation="leakyrelu"),
    "normal residual": dict(residual="normal", permutation="random", flows=3),
}


def _model(options: dict) -> BNAF:
    torch.manual_seed(0)
    return BNAF(3, **{"flows": 2, "hidden_factor": 3, **options}, seed=2).double()


def _inside_points(model: nn.Module, n: int = 4, *args: Tensor) -> Tensor:
    """Images of moderate points: inside the range of any stack."""
    x = torch.randn(n, model.dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model(x, *args)[0]


class _Inverse(nn.Module):
    """``z -> f^{-1}(z)`` as a module, so ``functional_call`` can feed it parameters."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, z: Tensor, *context: Tensor) -> Tensor:
        if context:
            return self.model.invert(z, *context, xtol=XTOL).x
        return differentiable_invert(self.model, z, xtol=XTOL).x


def _gradcheck_parameters(model: nn.Module, z: Tensor, *context: Tensor) -> bool:
    inverse = _Inverse(model)
    names = [n for n, _ in inverse.named_parameters()]
    values = [p.detach().clone().requires_grad_() for p in inverse.parameters()]

    def f(*params: Tensor) -> Tensor:
        return torch.func.functional_call(inverse, dict(zip(names, params)), (z, *context))

    # fast mode: one random directional derivative over all parameters at once (each full
    # column would cost two root searches per parameter entry)
    return torch.autograd.gradcheck(f, tuple(values), atol=1e-6, rtol=1e-5, fast_mode=True)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_gradient_in_the_points_is_the_inverse_jacobian(name: str) -> None:
    model = _model(CONFIGS[name])
    z = _inside_points(model).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v: differentiable_invert(model, v, xtol=XTOL).x, (z,), atol=1e-6, rtol=1e-5
    )


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_gradient_in_the_parameters_matches_finite_differences(name: str) -> None:
    model = _model(CONFIGS[name])
    assert _gradcheck_parameters(model, _inside_points(model))


def test_amortised_inverse_gradients_in_points_theta_and_weights() -> None:
    torch.manual_seed(3)
    flow = AmortisedBNAF(3, flows=2, layers=2, hidden_factor=2).double()
    theta = 0.3 * torch.randn(4, flow.n_amortised)
    z = _inside_points(flow, 4, theta).requires_grad_()
    theta.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v, t: flow.invert(v, t, xtol=XTOL).x,
        (z, theta),
        atol=1e-6,
        rtol=1e-5,
        fast_mode=True,  # theta has 360 entries: one random direction instead of each
    )
    assert _gradcheck_parameters(flow, z.detach(), theta.detach())


def test_conditional_inverse_gradient_reaches_the_context() -> None:
    torch.manual_seed(4)
    model = ConditionalBNAF(2, 2, flows=2, hidden_factor=3, context_hidden=5).double()
    with torch.no_grad():  # move the context network off its context-free start
        model.context_net[-1].weight.normal_(0.0, 0.1)
    c = torch.randn(3, 2)
    z = _inside_points(model, 3, c)
    c.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda ctx: model.invert(z, ctx, xtol=XTOL).x, (c,), atol=1e-6, rtol=1e-5
    )


def test_points_outside_the_range_get_no_gradient_and_spoil_none() -> None:
    model = _model({})  # bounded: a far point has no preimage
    z = torch.cat([_inside_points(model, 3), torch.full((1, 3), 50.0)]).requires_grad_()
    res = differentiable_invert(model, z)
    assert res.inside.tolist() == [True, True, True, False]
    res.x[res.inside].sum().backward()
    assert torch.all(z.grad[3] == 0) and torch.isfinite(z.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_no_graph_without_gradients_and_no_iterations_in_the_graph() -> None:
    # The result is the root search's own value; only one node per flow sits on it.
    model = _model({})
    z = _inside_points(model)
    with torch.no_grad():
        plain = differentiable_invert(model, z).x
    assert not plain.requires_grad
    x = differentiable_invert(model, z.clone().requires_grad_()).x
    torch.testing.assert_close(x, plain, rtol=0, atol=0)
    nodes, stack, seen = [], [x.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if type(node).__name__ != "AccumulateGrad":  # the parameters themselves
            nodes.append(type(node).__name__)
        stack += [n for n, _ in node.next_functions]
    assert nodes.count("_ImplicitInverseBackward") == 2  # one per block flow
    assert len(nodes) <= 6  # the permutation, the final mask; no unrolled iterations


def test_implicit_inverse_of_a_triangular_map_by_hand() -> None:
    # f(x) = (a x1, x2 + b x1^2): x = (y1 / a, y2 - b (y1 / a)^2), differentiated by hand.
    a = torch.tensor(2.0, requires_grad=True)
    b = torch.tensor(0.5, requires_grad=True)
    y = torch.tensor([[1.0, 3.0]], requires_grad=True)

    def f(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
        return torch.stack([a * x[:, 0], x[:, 1] + b * x[:, 0] ** 2], dim=1)

    x0 = (y[:, 0] / a).detach()
    solution = torch.stack([x0, y[:, 1].detach() - b.detach() * x0**2], dim=1)
    x = implicit_inverse(f, solution, y, [a, b])
    x[:, 1].sum().backward()
    # x2 = y2 - b y1^2 / a^2: d/dy1 = -2 b y1 / a^2, d/da = 2 b y1^2 / a^3, d/db = -y1^2 / a^2
    torch.testing.assert_close(y.grad, torch.tensor([[-0.25, 1.0]]))
    torch.testing.assert_close(a.grad, torch.tensor(0.125))
    torch.testing.assert_close(b.grad, torch.tensor(-0.25))
