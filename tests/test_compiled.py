"""The training loss through ``torch.compile`` (bnaf/flows/compiled.py): the deferred fallback
of the scaled chain, the eager recomputation, the errors, and compiled training against eager
(the reference) in a run and in a pack. Tests that run the inductor compiler are marked slow."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from uci_synthetic import write_prepared

from bnaf.core.errors import BnafError
from bnaf.flows import BNAF, BlockFlow
from bnaf.flows.compiled import CompiledLoss, compile_errors
from bnaf.flows.logjac import fallback_decision
from bnaf.uci.pack import PackedTrainer, pack_losses
from bnaf.uci.params import load_uci
from bnaf.uci.train import run_fingerprint, train_run
from bnaf.uci.trainer import Trainer, batch_loss

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "params" / "quick" / "uci.yaml"


def _saturating(flow: BlockFlow | BNAF) -> float:
    """An input at which the first unit's tanh saturates (|h| ~ 600: tanh' underflows)."""
    first = flow.linears[0] if isinstance(flow, BlockFlow) else flow.transforms[0].linears[0]
    return 600.0 / float(first.weights()[0].detach().abs().squeeze())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_deferred_chain_marks_the_saturated_samples_and_gives_the_others(dtype) -> None:
    """d = 1, L = 1, k = 1 (as test_flow's fallback test): of a saturated and an ordinary
    sample, the deferred chain gives NaN for the first (where the host check would fall back)
    and, for the second, exactly what the scaled chain gives."""
    torch.manual_seed(0)
    flow = BlockFlow(1, layers=1, hidden_factor=1, residual="none").to(dtype)
    x = torch.tensor([[_saturating(flow)], [0.3]], dtype=dtype)
    with fallback_decision("deferred"):
        y, log_diag = flow.transform(x)
    assert torch.isnan(log_diag[0]).all() and torch.isfinite(log_diag[1]).all()
    y_ref, log_ref = flow._transform_scaled(x[1:])  # type: ignore[misc]
    assert torch.equal(log_diag[1:], log_ref) and torch.equal(y[1:], y_ref)
    assert flow._transform_scaled(x) is None  # the host check: the whole call falls back


@pytest.mark.parametrize("layers", [1, 2])
def test_a_deferred_model_equals_the_eager_one_bit_for_bit(layers: int) -> None:
    """Where nothing saturates, the deferred chain is the scaled chain: same log-density and
    gradients, to the bit (the compiled graph starts from this code)."""
    torch.manual_seed(1)
    model = BNAF(4, flows=3, layers=layers, hidden_factor=3)
    x = torch.randn(32, 4)
    eager = model.log_prob(x)
    g_eager = torch.autograd.grad(eager.sum(), list(model.parameters()))
    with fallback_decision("deferred"):
        deferred = model.log_prob(x)
    g_deferred = torch.autograd.grad(deferred.sum(), list(model.parameters()))
    assert torch.equal(eager, deferred)
    assert all(torch.equal(a, b) for a, b in zip(g_eager, g_deferred))


def test_the_compiled_loss_recomputes_a_saturated_batch_eagerly() -> None:
    """A batch with a saturated sample: the traced graph's loss is NaN, so the loss (value
    and gradient) is the eager code's, which takes the exact log-domain chain; an ordinary
    batch keeps the traced graph's loss (no recomputation)."""
    torch.manual_seed(2)
    model = BNAF(1, flows=1, layers=1, hidden_factor=1)
    loss = CompiledLoss(batch_loss, backend="eager")  # traced by dynamo, run as traced
    ordinary = torch.tensor([[0.1], [-0.4], [0.7]])
    value = loss(model, ordinary)
    assert loss.fallbacks == 0
    torch.testing.assert_close(value, batch_loss(model, ordinary), rtol=1e-6, atol=0)
    saturated = torch.tensor([[0.1], [_saturating(model)], [0.7]])
    value = loss(model, saturated)
    assert loss.fallbacks == 1
    params = list(model.parameters())
    grads = torch.autograd.grad(value, params)
    reference = batch_loss(model, saturated)
    assert torch.isfinite(reference) and torch.equal(value, reference)
    assert all(torch.equal(a, b) for a, b in zip(grads, torch.autograd.grad(reference, params)))


def test_a_compiler_failure_is_one_line_and_other_errors_pass_through() -> None:
    def broken_backend(graph, example_inputs):
        raise RuntimeError("no C++ compiler found\nmore detail")

    loss = CompiledLoss(batch_loss, backend=broken_backend)
    message = r"^torch\.compile failed \(RuntimeError: no C\+\+ compiler found\)"
    with pytest.raises(BnafError, match=message) as e:
        loss(BNAF(2, flows=1), torch.randn(4, 2))
    assert "\n" not in str(e.value) and "compile: false" in str(e.value)
    with pytest.raises(ValueError, match="mine"), compile_errors():
        raise ValueError("mine")
    with pytest.raises(RuntimeError, match="mine"), compile_errors():
        raise RuntimeError("mine")


def test_compile_is_a_checked_param_and_part_of_the_fingerprint(tmp_path: Path) -> None:
    raw = yaml.safe_load(QUICK.read_text())
    assert raw["uci"]["train"]["compile"] is False  # the eager code is the default
    assert (
        yaml.safe_load((ROOT / "params/paper/uci.yaml").read_text())["uci"]["train"]["compile"]
        is False
    )
    raw["uci"]["train"]["compile"] = "sometimes"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(BnafError, match="compile"):
        load_uci(bad)
    p = load_uci(QUICK)
    splits = {"train": torch.zeros(3, 2)}
    on = dataclasses.replace(p, train=dataclasses.replace(p.train, compile=True))
    cpu = torch.device("cpu")
    assert run_fingerprint(p, splits, cpu, seed=0) != run_fingerprint(on, splits, cpu, seed=0)


def test_compile_chooses_the_loss_of_a_run_and_of_a_pack() -> None:
    """Only ``compile: true`` puts a run's or a pack's loss through the compiler (nothing is
    compiled before the first step, so this costs nothing)."""
    p = load_uci(QUICK)
    flow = dataclasses.replace(p.flow, flows=1, layers=1, hidden_factor=2)
    train, val = torch.randn(10, 2), torch.randn(5, 2)
    for compiled in (False, True):
        tp = dataclasses.replace(p.train, compile=compiled)
        runs = [Trainer(train, val, flow, s, tp, torch.device("cpu")) for s in range(2)]
        pack = PackedTrainer(runs)
        if compiled:
            assert isinstance(runs[0].loss, CompiledLoss) and runs[0].loss.loss_fn is batch_loss
            assert isinstance(pack.losses, CompiledLoss) and pack.losses.loss_fn is pack_losses
        else:
            assert runs[0].loss is batch_loss and pack.losses is pack_losses


# ------------------------------------------------------------------ with the inductor


def _params(tmp_path: Path, **train) -> Path:
    raw = yaml.safe_load(QUICK.read_text())
    raw["uci"]["train"] |= {"max_epochs": 2, "train_subset": None, "batch_size": 64, **train}
    path = tmp_path / f"uci-{len(list(tmp_path.glob('uci-*')))}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
@pytest.mark.float32
def test_a_compiled_run_matches_the_eager_run(tmp_path: Path) -> None:
    """The same run (2 epochs of 5 batches, the last one short) eager and compiled: every
    epoch's loss and validation, and the reported test log-likelihood, agree to float32
    rounding; the compiled run's files are complete."""
    data = write_prepared(tmp_path / "toy.h5", dim=3, sizes=(300, 100, 100))
    runs = {}
    for compiled in (False, True):
        p = load_uci(_params(tmp_path, compile=compiled))
        out = tmp_path / f"compiled-{compiled}"
        runs[compiled] = train_run(p, data, "toy", "L2_H4", 0, out, log=lambda _: None)
        assert {"metrics.json", "model.pt", "history.csv"} <= {f.name for f in out.iterdir()}
    eager, compiled = runs[False], runs[True]
    assert len(eager["history"]) == len(compiled["history"]) == 2
    for a, b in zip(eager["history"], compiled["history"]):
        assert math.isclose(a["train_nll"], b["train_nll"], rel_tol=0, abs_tol=1e-4)
        assert math.isclose(a["validation_ll"], b["validation_ll"], rel_tol=0, abs_tol=1e-4)
    test = [r["test"]["log_likelihood"] for r in (eager, compiled)]
    assert math.isclose(*test, rel_tol=0, abs_tol=1e-4)
    assert json.loads((tmp_path / "compiled-True" / "metrics.json").read_text())["seed"] == 0


@pytest.mark.slow
def test_a_compiled_pack_matches_its_members_eager_runs() -> None:
    """Three seeds as a compiled pack against their separate eager runs, two epochs of three
    batches (the last one short), in float64: each member's epoch losses agree to 1e-10."""
    p = load_uci(QUICK)
    flow = dataclasses.replace(p.flow, flows=2, layers=2, hidden_factor=3)
    gen = torch.Generator().manual_seed(3)
    train, val = torch.randn(250, 4, generator=gen), torch.randn(60, 4, generator=gen)
    cpu = torch.device("cpu")

    def trainers(compiled: bool) -> list[Trainer]:
        tp = dataclasses.replace(p.train, compile=compiled, batch_size=100)
        return [Trainer(train, val, flow, s, tp, cpu, log=lambda _: None) for s in range(3)]

    pack, separate = PackedTrainer(trainers(True)), trainers(False)
    assert isinstance(pack.losses, CompiledLoss) and pack.losses.loss_fn is pack_losses
    for _ in range(2):
        packed = pack.train_epoch(pack.active)
        alone = [t.train_epoch() for t in separate]
        assert all(a is not None and b is not None for a, b in zip(packed, alone))
        for a, b in zip(packed, alone):
            assert math.isclose(a, b, rel_tol=0, abs_tol=1e-10)  # type: ignore[arg-type]
    assert pack.losses.fallbacks == 0
