"""One property test over every flow of the package, in float64: B-NAF in its options (residual,
activation, permutation, initialisation, last-flow residual, depth), the amortised B-NAF of
Section 5.4 at a fixed context, NAF-DDSF, Glow and planar flows.

For each: the log-determinant equals ``log|det J|`` of the autograd Jacobian; each block flow
is autoregressive (exact zeros above the diagonal of its Jacobian); every parameter gets a
finite gradient; a save/load round trip and ``train()``/``eval()`` give identical outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from bnaf.flows import BNAF, AmortisedBNAF, BlockFlow, load_flow, save_flow
from bnaf.flows.glow import Glow, load_glow, save_glow
from bnaf.flows.naf import NAFDDSF
from bnaf.flows.planar import PlanarFlow, load_planar, save_planar


@dataclass
class Case:
    make: Callable[[], nn.Module]
    dim: int
    #: (model, x) -> (y, log|det J|) of the map whose Jacobian is checked
    apply: Callable[[nn.Module, Tensor], tuple[Tensor, Tensor]] = lambda m, x: m(x)
    #: (model, path) -> the model saved at path and loaded back
    reload: Callable[[nn.Module, Path], nn.Module] | None = None
    #: the model's block flows, each autoregressive on its own
    blocks: Callable[[nn.Module], list[nn.Module]] = field(default=lambda m: [])


def _bnaf_reload(model: nn.Module, path: Path) -> nn.Module:
    save_flow(model, path)
    return load_flow(path).double()


def _state_reload(make: Callable[[], nn.Module]) -> Callable[[nn.Module, Path], nn.Module]:
    def reload(model: nn.Module, path: Path) -> nn.Module:
        torch.save(model.state_dict(), path)
        fresh = make().double()
        fresh.load_state_dict(torch.load(path, weights_only=True))
        return fresh

    return reload


def _bnaf(**options) -> Case:
    def make() -> nn.Module:
        torch.manual_seed(0)
        return BNAF(3, **{"flows": 2, "hidden_factor": 2, **options}, seed=1)

    return Case(make, 3, reload=_bnaf_reload, blocks=lambda m: [
        t for t in m.transforms if isinstance(t, BlockFlow)
    ])  # fmt: skip


def _amortised() -> Case:
    def make() -> nn.Module:
        torch.manual_seed(0)
        return AmortisedBNAF(3, flows=2, layers=2, hidden_factor=2, final_residual=True)

    def theta(model: nn.Module, n: int) -> Tensor:
        g = torch.Generator().manual_seed(5)
        return 0.3 * torch.randn(1, model.n_amortised, generator=g, dtype=torch.float64).expand(
            n, -1
        )

    return Case(make, 3, apply=lambda m, x: m(x, theta(m, len(x))), reload=_state_reload(make))


def _naf() -> Case:
    def make() -> nn.Module:
        torch.manual_seed(0)
        return NAFDDSF(dim=3, flows=2, hidden=12, hidden_layers=1)

    return Case(make, 3, reload=_state_reload(make))


def _glow() -> Case:
    def reload(model: nn.Module, path: Path) -> nn.Module:
        save_glow(model, path)
        return load_glow(path).double()

    return Case(lambda: Glow(dim=2, depth=3, hidden=8, seed=0), 2, reload=reload)


def _planar() -> Case:
    def make() -> nn.Module:
        torch.manual_seed(0)
        return PlanarFlow(dim=2, flows=4, init_std=0.5)

    def reload(model: nn.Module, path: Path) -> nn.Module:
        save_planar(model, path)
        return load_planar(path).double()

    return Case(make, 2, reload=reload)


CASES: dict[str, Case] = {
    "bnaf-default": _bnaf(),
    "bnaf-normal": _bnaf(residual="normal", layers=2),
    "bnaf-none-leakyrelu": _bnaf(residual="none", activation="leakyrelu"),
    "bnaf-random-perm": _bnaf(permutation="random", flows=3),
    "bnaf-paper-init": _bnaf(init="paper", final_residual=True),
    "bnaf-deep": _bnaf(layers=3, hidden_factor=3, flows=1),
    "amortised-bnaf": _amortised(),
    "naf-ddsf": _naf(),
    "glow": _glow(),
    "planar": _planar(),
}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> tuple[Case, nn.Module, Tensor]:
    c = CASES[request.param]
    model = c.make().double()
    x = torch.randn(5, c.dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    return c, model, x


def test_log_det_is_log_abs_det_of_the_autograd_jacobian(case) -> None:
    c, model, x = case
    _, log_det = c.apply(model, x)
    for i in range(len(x)):
        jac = torch.autograd.functional.jacobian(lambda v: c.apply(model, v[None])[0][0], x[i])
        torch.testing.assert_close(log_det[i], torch.linalg.slogdet(jac).logabsdet)


def test_every_block_flow_is_autoregressive(case) -> None:
    c, model, x = case
    for block in c.blocks(model):
        jac = torch.autograd.functional.jacobian(lambda v, b=block: b(v[None])[0][0], x[0])
        assert torch.all(jac.triu(1) == 0), "a coordinate depends on a later one"
        assert torch.all(jac.diagonal() > 0), "not increasing in its own coordinate"


def test_every_parameter_gets_a_finite_gradient(case) -> None:
    c, model, x = case
    y, log_det = c.apply(model, x)
    (y.square().sum() - log_det.sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} gets no gradient"
        assert torch.isfinite(p.grad).all(), name


def test_save_and_load_give_the_same_map(case, tmp_path: Path) -> None:
    c, model, x = case
    again = c.reload(model, tmp_path / "model.pt")
    for a, b in zip(c.apply(model, x), c.apply(again, x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_train_and_eval_modes_agree(case) -> None:
    c, model, x = case
    model.train()
    first = c.apply(model, x)
    model.eval()
    for a, b in zip(first, c.apply(model, x)):  # no dropout or batch statistics: same map
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
