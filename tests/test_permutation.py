"""The permutation between flows against the authors' construction (Section 5.3).

The authors' ``create_model`` puts ``Permutation(d, 'flip')`` between consecutive flows, so the
second flow sees the first flow's outputs in reverse order. Each flow alone has a lower
triangular Jacobian (Section 3.2); with a flip between two flows the first output depends on
every input, so the Jacobian of the stack is *not* lower triangular.
"""

from __future__ import annotations

import pytest
import torch

from bnaf.flows import BNAF
from bnaf.flows.amortised import AmortisedBNAF
from bnaf.flows.layers import BlockFlow, Permutation

D = 4


def test_flip_reverses_the_dimensions() -> None:
    p = Permutation.flip(D)
    assert p.perm.tolist() == [3, 2, 1, 0]
    x = torch.arange(8.0).view(2, D)
    torch.testing.assert_close(p.permute(x), x.flip(1))
    y, log_det = p(x)
    torch.testing.assert_close(y, x.flip(1))
    assert torch.equal(log_det, torch.zeros(2))
    torch.testing.assert_close(p.inverse(p.permute(x)), x)


def test_random_permutation_is_a_seeded_bijection() -> None:
    a = Permutation.random(7, torch.Generator().manual_seed(3))
    b = Permutation.random(7, torch.Generator().manual_seed(3))
    assert sorted(a.perm.tolist()) == list(range(7)) and torch.equal(a.perm, b.perm)
    x = torch.randn(5, 7)
    torch.testing.assert_close(a.inverse(a.permute(x)), x)
    torch.testing.assert_close(a.permute(x), x[:, a.perm])


@pytest.mark.parametrize("flows", [1, 2, 5])
def test_stack_is_flows_with_a_flip_between_consecutive_ones(flows: int) -> None:
    model = BNAF(D, flows=flows, layers=1, hidden_factor=2)
    kinds = [type(t) for t in model.transforms]
    assert kinds == [BlockFlow, Permutation] * (flows - 1) + [BlockFlow]
    for t in model.transforms[1::2]:
        assert t.perm.tolist() == list(range(D - 1, -1, -1))
    # every flow but the last is gated, the last has no residual (authors' create_model)
    residuals = [t.residual for t in model.transforms[::2]]
    assert residuals == ["gated"] * (flows - 1) + ["none"]


def test_second_flow_sees_the_first_flows_outputs_reversed() -> None:
    model = BNAF(D, flows=2, layers=1, hidden_factor=3)
    first, _, second = model.transforms
    seen = {}
    second.register_forward_pre_hook(lambda m, inputs: seen.setdefault("x", inputs[0].clone()))
    x = torch.randn(6, D, generator=torch.Generator().manual_seed(0))
    z, log_det = model(x)
    y1, ld1 = first(x)
    torch.testing.assert_close(seen["x"], y1[:, [3, 2, 1, 0]])
    z2, ld2 = second(y1[:, [3, 2, 1, 0]])
    torch.testing.assert_close(z, z2)
    torch.testing.assert_close(log_det, ld1 + ld2)


def _jacobian(model: BNAF, x: torch.Tensor) -> torch.Tensor:
    return torch.autograd.functional.jacobian(lambda v: model(v[None])[0][0], x)


def test_two_flows_with_a_flip_are_not_lower_triangular() -> None:
    torch.manual_seed(0)
    model = BNAF(D, flows=2, layers=1, hidden_factor=3)
    x = torch.randn(D)
    jac = _jacobian(model, x)
    # z_0 = f2(u_0) with u_0 = y_3, which depends on every input: a full first row
    assert (jac[0].abs() > 1e-8).all()
    assert jac.triu(1).abs().max() > 1e-6
    # the determinant is still the flows' product of diagonals (flip: |det| = 1)
    torch.testing.assert_close(model(x[None])[1][0], torch.linalg.slogdet(jac)[1])
    # one flow alone stays lower triangular with a positive diagonal (Section 3.2)
    one = _jacobian(BNAF(D, flows=1, layers=1, hidden_factor=3), x)
    assert torch.equal(one.triu(1), torch.zeros(D, D)) and (one.diagonal() > 0).all()


def test_amortised_posterior_flips_between_flows_too() -> None:
    flow = AmortisedBNAF(D, flows=3, layers=1, hidden_factor=2, seed=0)
    perms = [t for t in flow.transforms if isinstance(t, Permutation)]
    assert len(perms) == 2
    assert all(p.perm.tolist() == [3, 2, 1, 0] for p in perms)


def test_random_permutations_between_flows_follow_the_seed() -> None:
    # one generator seeded with the model's seed draws the permutations in order
    model = BNAF(7, flows=3, layers=1, hidden_factor=1, permutation="random", seed=5)
    g = torch.Generator().manual_seed(5)
    want = [Permutation.random(7, g).perm for _ in range(2)]
    assert [t.perm.tolist() for t in model.transforms[1::2]] == [w.tolist() for w in want]
    other = BNAF(7, flows=3, layers=1, hidden_factor=1, permutation="random", seed=6)
    assert any(
        not torch.equal(a.perm, b.perm)
        for a, b in zip(model.transforms[1::2], other.transforms[1::2])
    )
