"""Boundary cases of the core modules that the property tests do not reach.

Each pins a rule with an outside reference: torch's ``ReduceLROnPlateau`` ignores a decay
smaller than ``eps`` and counts an improvement only when strictly better than the threshold;
Adam's defaults are Kingma and Ba's (Algorithm 1); a parameter count by hand for one and two
flows; a saved flow comes back on the CPU by default.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bnaf.core.optim import Adam, PlateauSchedule, decayed_lr
from bnaf.flows import BNAF, save_flow
from bnaf.flows.config import DEFAULTS
from bnaf.flows.count import bnaf_counts, count_parameters
from bnaf.flows.model import load_flow, load_flow_meta


def test_decay_smaller_than_eps_is_ignored_as_in_torch() -> None:
    # torch.optim.lr_scheduler.ReduceLROnPlateau: the new rate is taken only if
    # old_lr - new_lr > eps (strictly); 2e-8 * 0.5 and 2e-8 - 1e-8 are exact in binary
    assert decayed_lr(2e-8, 0.5, 0.0) == 2e-8
    assert decayed_lr(2e-8, 0.5, 0.0, eps=0.5e-8) == 1e-8
    # at the minimum plus a hair: the clamp would move it by less than eps, so it stays
    assert decayed_lr(5e-4 + 5e-9, 0.5, 5e-4) == 5e-4 + 5e-9
    assert decayed_lr(1e-2, 0.5, 5e-4) == 5e-3
    assert decayed_lr(6e-4, 0.5, 5e-4) == 5e-4


@pytest.mark.parametrize("flows, paper, full", [(1, 14, 16), (2, 29, 33)])
def test_bnaf_counts_by_hand(flows: int, paper: int, full: int) -> None:
    # d = 2, L = 1, k = 1: two 2x2 layers, each 4 weights (1 above the block diagonal),
    # 2 log-scales and 2 biases = 8 stored, 7 counted by the paper; every flow but the last
    # has one gate: 1 flow = 16 / 14, 2 flows = 16 + 1 + 16 = 33 / 14 + 1 + 14 = 29
    assert bnaf_counts(2, 1, 1, flows=flows) == {"paper": paper, "full": full}


def test_saved_flow_loads_on_the_cpu_by_default(tmp_path: Path) -> None:
    model = BNAF(3, flows=2, layers=1, hidden_factor=2)
    save_flow(model, tmp_path / "m.pt", note="x")
    for loaded in (load_flow(tmp_path / "m.pt"), load_flow_meta(tmp_path / "m.pt")[0]):
        assert all(p.device == torch.device("cpu") for p in loaded.parameters())
    assert load_flow_meta(tmp_path / "m.pt")[1]["note"] == "x"


@pytest.mark.parametrize("mode", ["abs", "rel"])
def test_improvement_must_beat_the_threshold_strictly(mode: str) -> None:
    # torch's ReduceLROnPlateau: abs: a < best - threshold; rel: a < best * (1 - threshold);
    # best 1.0, threshold 0.5: both thresholds are exactly 0.5, and 0.5 is not an improvement
    s = PlateauSchedule(
        patience=5, cooldown=0, early_stopping=9, threshold=0.5, threshold_mode=mode
    )
    assert s.step(1.0).improved
    assert not s.step(0.5).improved
    assert s.step(0.4999).improved


def test_adam_defaults_are_kingma_and_ba() -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    d = Adam([p]).defaults
    assert (d["lr"], d["betas"], d["eps"], d["amsgrad"]) == (1e-3, (0.9, 0.999), 1e-8, False)


@pytest.mark.parametrize(
    "lr, eps, betas",
    [(0.0, 0.0, (0.0, 0.0)), (1e-2, 1e-8, (0.9, 0.999)), (1.0, 1.0, (0.999, 0.0))],
)
def test_adam_accepts_the_closed_ranges_torch_accepts(lr, eps, betas) -> None:
    # torch.optim.Adam: 0 <= lr, 0 <= eps, 0 <= beta_i < 1
    Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr, betas=betas, eps=eps)


@pytest.mark.parametrize(
    "lr, eps, betas",
    [(-1e-3, 1e-8, (0.9, 0.999)), (1e-3, -1e-8, (0.9, 0.999)), (1e-3, 1e-8, (1.0, 0.999)),
     (1e-3, 1e-8, (1.5, 0.999)), (1e-3, 1e-8, (-0.1, 0.999)), (1e-3, 1e-8, (0.9, 1.0)),
     (1e-3, 1e-8, (0.9, -0.1))],
)  # fmt: skip
def test_adam_refuses_settings_outside_them(lr, eps, betas) -> None:
    with pytest.raises(ValueError, match="invalid Adam settings"):
        Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr, betas=betas, eps=eps)


def test_schedule_defaults_are_the_authors() -> None:
    # density_estimation.py: --patience 20, --cooldown 10, --early_stopping 100; the threshold
    # and its mode are those of torch's ReduceLROnPlateau (1e-4) with threshold_mode='abs'
    s = PlateauSchedule()
    assert (s.patience, s.cooldown, s.early_stopping) == (20, 10, 100)
    assert (s.threshold, s.threshold_mode) == (1e-4, "abs")
    with pytest.raises(ValueError, match="unknown threshold_mode"):
        PlateauSchedule(threshold_mode="relative")  # type: ignore[arg-type]


def test_schedule_counts_non_finite_epochs_from_the_start() -> None:
    # no improvement is possible on NaN: the counters start at zero and grow from epoch 1
    s = PlateauSchedule(patience=1, cooldown=0, early_stopping=2)
    first, second = s.step(float("nan")), s.step(float("nan"))
    assert (first.improved, first.reduce, first.stop) == (False, False, False)
    assert (second.improved, second.reduce, second.stop) == (False, True, True)


def test_bnaf_defaults_are_the_authors_density_model() -> None:
    # density_estimation.py: --flows 5, --layers 1, --hidden_dim 10, --residual gated, with
    # a flip between flows and no residual on the last flow
    want = dict(flows=5, layers=1, hidden_factor=10, residual="gated", activation="tanh")
    want |= dict(permutation="flip", init="authors", final_residual=False)
    assert DEFAULTS == want
    model = BNAF(3)
    assert model.config == dict(dim=3, **want, seed=0)
    assert model.dim == 3  # what the inverse and the sampler read (bnaf.flows.layers.Stack)
    with pytest.raises(ValueError, match="unknown convention"):
        count_parameters(model, "nonzero")  # type: ignore[arg-type]


def test_model_inverse_and_sampler_pass_their_options_on() -> None:
    # an onto flow (final residual): every z has a preimage, so inverse(f(x)) = x
    model = BNAF(2, flows=2, layers=1, hidden_factor=2, final_residual=True)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = model(x)[0]
    torch.testing.assert_close(model.inverse(z), x, rtol=1e-9, atol=1e-9)
    back, inside = model.inverse(z, outside="mask")
    assert bool(inside.all())
    torch.testing.assert_close(back, x, rtol=1e-9, atol=1e-9)
    coarse = model.inverse(z, xtol=0.5)
    assert not torch.allclose(coarse, x, rtol=0, atol=1e-9)  # the tolerance reaches the search
    a = model.sample(7, generator=torch.Generator().manual_seed(3))
    b = model.sample(7, generator=torch.Generator().manual_seed(3))
    assert a.x.shape == (7, 2) and torch.equal(a.x, b.x)
