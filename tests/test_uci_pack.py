"""Packed seeds: a pack of B-NAFs computes each member's own numbers, and a packed training run
is each seed's separate run (issue: packed training).

The pack must never mix its members: every member's log-density and gradient equal its own
model's, and a packed training run gives each seed the losses, weights, Polyak average,
learning rate, early stop and output files of its separate run, up to rounding.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from uci_synthetic import write_prepared

import bnaf.flows.pack
from bnaf.cli import main
from bnaf.core.errors import BnafError
from bnaf.core.optim import Adam
from bnaf.flows import BNAF, MaskedBlockLinear, load_flow
from bnaf.flows.logjac import fallback_decision
from bnaf.flows.pack import bnaf_pack, check_packable, pack_log_prob, stack_parameters
from bnaf.uci.pack import PackedTrainer
from bnaf.uci.params import load_uci
from bnaf.uci.train import train_run, train_runs
from bnaf.uci.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "params" / "quick" / "uci.yaml"
CPU = torch.device("cpu")


def _models(dim: int, seeds=(0, 1, 2), **kwargs) -> list[BNAF]:
    out = []
    for s in seeds:
        torch.manual_seed(s)
        out.append(BNAF(dim, seed=s, **kwargs))
    return out


def _own(models: list[BNAF], x: torch.Tensor) -> tuple[torch.Tensor, list[tuple]]:
    """Each model alone: its log-density of its rows and its gradient of their sum."""
    lp = torch.stack([m.log_prob(x[i]) for i, m in enumerate(models)])
    grads = [torch.autograd.grad(lp[i].sum(), list(m.parameters())) for i, m in enumerate(models)]
    return lp.detach(), grads


@pytest.mark.parametrize(
    "dim, kwargs",
    [
        (5, dict(flows=3, layers=2, hidden_factor=4)),
        (5, dict(flows=3, layers=1, hidden_factor=3, permutation="random")),
        (4, dict(flows=2, layers=2, hidden_factor=3, residual="normal", final_residual=True)),
        (4, dict(flows=2, layers=1, hidden_factor=2, residual="none")),
        (3, dict(flows=2, layers=2, hidden_factor=3, activation="leakyrelu")),
        (1, dict(flows=2, layers=2, hidden_factor=3)),
    ],
)
@pytest.mark.parametrize("where", ["host", "device"])
def test_each_member_of_a_pack_is_its_own_model(dim: int, kwargs: dict, where: str) -> None:
    """Log-density and every parameter's gradient of each member equal its model's alone, for
    each residual, permutation and activation, ``d = 1``, and with the fallback decided on the
    host (the scaled chain) or per entry on the device (the log chain)."""
    models = _models(dim, **kwargs)
    x = torch.randn(3, 17, dim) * 2.0
    with fallback_decision(where):
        ref, ref_grads = _own(models, x)
        stacked = stack_parameters(models)
        lp = pack_log_prob(models, x, stacked)
        grads = torch.autograd.grad(lp.sum(), list(stacked.values()))
    torch.testing.assert_close(lp, ref, rtol=0, atol=1e-12)
    for k, name in enumerate(stacked):
        for i in range(3):
            torch.testing.assert_close(grads[k][i], ref_grads[i][k], rtol=0, atol=1e-11,
                                       msg=f"{name} of member {i}")  # fmt: skip


@pytest.mark.parametrize("panels", [1, 3])
def test_a_pack_follows_each_layers_product(panels: int) -> None:
    """Where a layer skips its zero blocks (``panels > 1``, chosen by size on the CPU or
    forced), each member's product in the pack does too; dense otherwise. Either way the
    members' log-densities and gradients are their models' own."""
    models = _models(6, flows=2, layers=2, hidden_factor=3)
    for m in models:
        for layer in m.modules():
            if isinstance(layer, MaskedBlockLinear):
                layer.panels = panels
    x = torch.randn(3, 11, 6)
    ref, ref_grads = _own(models, x)
    stacked = stack_parameters(models)
    calls = []
    original = bnaf.flows.pack.block_sparse_linear

    def counting(*args, **kwargs):
        calls.append(args[-1])
        return original(*args, **kwargs)

    bnaf.flows.pack.block_sparse_linear = counting
    try:
        lp = pack_log_prob(models, x, stacked)
    finally:
        bnaf.flows.pack.block_sparse_linear = original
    assert calls == ([] if panels == 1 else [3] * (3 * 2 * 3))  # members x flows x layers
    grads = torch.autograd.grad(lp.sum(), list(stacked.values()))
    torch.testing.assert_close(lp, ref, rtol=0, atol=1e-12)
    for k in range(len(grads)):
        for i in range(3):
            torch.testing.assert_close(grads[k][i], ref_grads[i][k], rtol=0, atol=1e-11)


def test_a_pack_maps_each_member_and_keeps_the_rows_apart() -> None:
    """``z`` and ``log|det|`` of each member equal its model's; changing one member's rows
    changes only that member's outputs."""
    models = _models(3, flows=2, layers=1, hidden_factor=4, permutation="random")
    x = torch.randn(3, 9, 3)
    z, log_det = bnaf_pack(models, x)
    for i, m in enumerate(models):
        z_i, ld_i = m(x[i])
        torch.testing.assert_close(z[i], z_i, rtol=0, atol=1e-13)
        torch.testing.assert_close(log_det[i], ld_i, rtol=0, atol=1e-13)
    y = x.clone()
    y[1] += 1.0
    z2, log_det2 = bnaf_pack(models, y)
    assert torch.equal(z2[0], z[0]) and torch.equal(z2[2], z[2])
    assert not torch.equal(z2[1], z[1])
    assert torch.equal(log_det2[0], log_det[0]) and torch.equal(log_det2[2], log_det[2])


def test_stacked_parameters_are_the_members_parameters() -> None:
    """A member's optimiser step and state loading write into the pack; the pack's values are
    what the member shows."""
    models = _models(2, seeds=(0, 1), flows=1, layers=1, hidden_factor=2)
    stacked = stack_parameters(models)
    w = stacked["transforms.0.linears.0.weight"]
    with torch.no_grad():
        models[1].transforms[0].linears[0].weight.add_(1.0)
    assert torch.equal(w[1], models[1].transforms[0].linears[0].weight)
    state = {k: torch.zeros_like(v) for k, v in models[0].state_dict().items()}
    models[0].load_state_dict(state)
    assert not w[0].any() and w[1].any()
    p = models[1].transforms[0].linears[0].bias
    p.grad = torch.ones_like(p)
    before = stacked["transforms.0.linears.0.bias"][1].clone()
    Adam([p], lr=0.1).step()
    assert not torch.equal(stacked["transforms.0.linears.0.bias"][1], before)


def test_only_models_of_one_shape_are_packed() -> None:
    check_packable(_models(3, seeds=(0, 1), flows=2, permutation="random"))  # seeds may differ
    with pytest.raises(ValueError, match="different shapes"):
        check_packable(_models(3, seeds=(0,), flows=2) + _models(3, seeds=(1,), flows=3))
    with pytest.raises(ValueError, match="^a pack needs at least one model$"):
        check_packable([])


# ----------------------------------------------------------------- training


def _train_params(**train):
    p = load_uci(QUICK)
    base = dict(max_epochs=14, batch_size=8, patience=1, cooldown=0, threshold=0.01,
                early_stopping=3, lr=0.1, polyak=0.5, polyak_init="params", train_subset=None,
                device="cpu", threads=1)  # fmt: skip
    p.train = dataclasses.replace(p.train, **(base | train))
    p.flow = dataclasses.replace(p.flow, flows=2)
    return p


def _splits() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)

    def draw(n: int) -> torch.Tensor:
        x = torch.randn(n, 2, generator=gen) * torch.tensor([1.0, 0.3])
        x[:, 1] += 0.5 * x[:, 0] ** 2
        return x

    return draw(60), draw(40)


def _trainers(seeds=(0, 1, 2)) -> list[Trainer]:
    p = _train_params()
    flow = dataclasses.replace(p.flow, layers=1, hidden_factor=3)
    train, val = _splits()
    return [Trainer(train, val, flow, s, p.train, CPU, log=lambda _: None) for s in seeds]


def _state(t: Trainer) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": v for k, v in t.model.state_dict().items()}
    out |= {f"polyak.{i}": a for i, a in enumerate(t.polyak.average)}
    return out


def test_packed_training_is_each_seeds_separate_run() -> None:
    """float64: 8 steps an epoch, the seeds stop early at different epochs (one runs out of
    epochs), each after plateau decays that reload the best state; every member's losses,
    validation, learning rates, weights and Polyak average equal its separate run's."""
    alone = _trainers()
    for t in alone:
        while not t.finished:
            t.run_epoch(t.snapshot())
    epochs = [t.epoch for t in alone]
    assert len(set(epochs)) == 3 and max(epochs) * 8 >= 100  # preconditions of the test
    assert any(t.stop_reason == "early_stopping" for t in alone)
    assert all(any(h["decay"] for h in t.history) for t in alone)

    packed = _trainers()
    pack = PackedTrainer(packed)
    snaps = {i: t.snapshot() for i, t in enumerate(packed)}
    sizes = []
    while not pack.finished:
        sizes.append(len(pack.active))
        records = pack.run_epoch(snaps)
        snaps |= {i: packed[i].snapshot() for i in records}
    assert sizes[0] == 3 and sizes[-1] == 1  # members left the pack as they stopped
    for a, b in zip(alone, packed):
        assert (b.epoch, b.stop_reason, b.best_epoch) == (a.epoch, a.stop_reason, a.best_epoch)
        for ha, hb in zip(a.history, b.history, strict=True):
            for key in ("train_nll", "validation_ll", "lr"):
                assert hb[key] == pytest.approx(ha[key], rel=0, abs=1e-10), key
            assert (hb["best"], hb["decay"]) == (ha["best"], ha["decay"])
        assert b.lr == a.lr
        sa, sb = _state(a), _state(b)
        for k in sa:
            torch.testing.assert_close(sb[k], sa[k], rtol=0, atol=1e-10, msg=k)


@pytest.mark.parametrize("retries", [0, 3])
def test_a_diverging_member_leaves_the_pack_and_the_others_go_on(retries: int) -> None:
    """One member's weights made infinite: its epochs are retried with a lower learning rate
    until the retries are spent (at once with none), then it leaves the pack; the others, those
    after it in the pack included, train on undisturbed."""
    alone = _trainers(seeds=(0, 2))
    for t in alone:
        for _ in range(3):
            t.run_epoch(t.snapshot())
    packed = _trainers()
    for t in packed:
        t.tp = dataclasses.replace(t.tp, nonfinite_retries=retries)
    with torch.no_grad():
        packed[1].model.transforms[0].linears[0].bias.fill_(float("inf"))
    pack = PackedTrainer(packed)
    snaps = {i: t.snapshot() for i, t in enumerate(packed)}
    for _ in range(3):
        records = pack.run_epoch(snaps)
        assert sorted(records) == [0, 2]
        snaps |= {i: packed[i].snapshot() for i in records}
    assert list(pack.failed) == [1] and "diverged" in pack.failed[1]
    assert len(packed[1].nonfinite_events) == retries
    for a, b in zip(alone, (packed[0], packed[2])):
        assert [h["train_nll"] for h in b.history] == pytest.approx(
            [h["train_nll"] for h in a.history], rel=0, abs=1e-10
        )


def test_a_non_finite_batch_of_one_member_fails_only_its_epoch() -> None:
    """A non-finite loss or gradient norm of one member in any batch of the epoch (not only
    the last; the loss alone) makes that member's epoch fail, and only its."""
    packed = _trainers()
    pack = PackedTrainer(packed)
    step = pack.step
    calls = []

    def poisoned(members, x):
        loss, norm = step(members, x)
        calls.append(len(calls))
        if len(calls) == 2:  # the second of 8 batches: member 1's loss only
            loss = loss.clone()
            loss[1] = float("nan")
        return loss, norm

    pack.step = poisoned  # type: ignore[method-assign]
    losses = pack.train_epoch(packed)
    assert len(calls) == 8 and losses[1] is None
    assert losses[0] is not None and losses[2] is not None


def test_a_pack_restacks_only_when_its_members_change() -> None:
    """The stacked parameters are made once and kept while the members are the same (their
    gradients and the members' views live in them); a member leaving makes a new stack."""
    packed = _trainers()
    pack = PackedTrainer(packed)
    first = pack._stack(packed)
    assert pack._stack(list(packed)) is first
    second = pack._stack(packed[::2])
    assert second is not first and next(iter(second.values())).shape[0] == 2


def test_a_pack_of_one_is_the_separate_run() -> None:
    (alone,) = _trainers(seeds=(1,))
    (member,) = _trainers(seeds=(1,))
    pack = PackedTrainer([member])
    snaps = {0: member.snapshot()}
    for _ in range(3):
        alone.run_epoch(alone.snapshot())
        pack.run_epoch(snaps)
        snaps[0] = member.snapshot()
    assert [h["train_nll"] for h in member.history] == pytest.approx(
        [h["train_nll"] for h in alone.history], rel=0, abs=1e-10
    )


def test_a_packed_epoch_time_is_the_packs_for_each_member() -> None:
    """Each member's epoch record holds the pack's epoch time (positive, the same for all), and
    its training time adds them up: what its throughput is computed from."""
    packed = _trainers()
    pack = PackedTrainer(packed)
    snaps = {i: t.snapshot() for i, t in enumerate(packed)}
    for _ in range(2):
        records = pack.run_epoch(snaps)
        seconds = {r["seconds"] for r in records.values()}
        assert len(seconds) == 1 and 0 < seconds.pop() < 60
        snaps |= {i: packed[i].snapshot() for i in records}
    for t in packed:
        assert t.train_s == pytest.approx(sum(h["seconds"] for h in t.history))
        assert t.history[0]["samples_per_s"] == pytest.approx(60 / t.history[0]["seconds"])


def test_a_pack_needs_one_split_and_one_recipe() -> None:
    a, b = _trainers(seeds=(0,)) + _trainers(seeds=(1,))
    with pytest.raises(
        ValueError, match="^the members of a pack share their training split and params$"
    ):
        PackedTrainer([a, b])  # same values, but not the same split tensor


# ----------------------------------------------------------------- runs and files


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_prepared(tmp_path / "prepared" / "toy.h5", dim=3, sizes=(400, 150, 150))


def _comparable(m: dict) -> dict:
    drop = {"wall_s", "train_s", "throughput", "resumes", "environment", "history", "pack"}
    out = {k: v for k, v in m.items() if k not in drop}
    out["history"] = [
        {k: v for k, v in h.items() if k not in ("samples_per_s", "seconds")} for h in m["history"]
    ]
    return out


def _file_params(**train):
    p = load_uci(QUICK)
    base = dict(max_epochs=5, train_subset=None, device="cpu", threads=1, patience=1, cooldown=0)
    p.train = dataclasses.replace(p.train, **(base | train))
    return p


@pytest.mark.float32
def test_packed_runs_write_each_seeds_files_within_1e4_nats(tmp_path: Path, data: Path) -> None:
    """float32, the pipeline's dtype: a packed run's metrics equal the separate runs' within
    1e-4 nats; each seed writes its own metrics.json, model.pt and history.csv."""
    p = _file_params()
    outs = [tmp_path / "pack" / f"seed{s}" for s in (0, 1)]
    packed = train_runs(p, data, "toy", "L1_H4", [0, 1], outs, log=lambda _: None)
    for seed, out, m in zip((0, 1), outs, packed):
        alone = train_run(p, data, "toy", "L1_H4", seed, tmp_path / f"alone{seed}",
                          log=lambda _: None)  # fmt: skip
        for split in ("validation", "test"):
            assert m[split]["log_likelihood"] == pytest.approx(
                alone[split]["log_likelihood"], abs=1e-4
            )
        assert (m["seed"], m["best_epoch"], m["epochs_run"]) == (
            seed, alone["best_epoch"], alone["epochs_run"])  # fmt: skip
        assert m["pack"] == {"seeds": [0, 1], "members": 2} and alone["pack"]["members"] == 1
        on_disk = json.loads((out / "metrics.json").read_text())
        assert on_disk["seed"] == seed and (out / "history.csv").is_file()
        assert load_flow(out / "model.pt").config["seed"] == seed
        assert not (out / "checkpoint.pt").exists()


@pytest.mark.float32
def test_kill_and_resume_of_a_pack_is_bit_identical(tmp_path: Path, data: Path) -> None:
    p = _file_params(threshold=1.0, lr=0.05)
    whole = [tmp_path / "a" / f"seed{s}" for s in (0, 1, 2)]
    full = train_runs(p, data, "toy", "L1_H4", [0, 1, 2], whole, log=lambda _: None)
    assert any(h["decay"] for h in full[0]["history"])
    parts = [tmp_path / "b" / f"seed{s}" for s in (0, 1, 2)]
    quiet = dict(log=lambda _: None)
    assert train_runs(p, data, "toy", "L1_H4", [0, 1, 2], parts, stop_after_epochs=2,
                      **quiet) is None  # fmt: skip
    assert all((o / "checkpoint.pt").is_file() for o in parts)
    resumed = train_runs(p, data, "toy", "L1_H4", [0, 1, 2], parts, **quiet)
    for a, b, oa, ob in zip(full, resumed, whole, parts):
        assert b["resumes"] == 1
        assert _comparable(b) == _comparable(a)
        sa, sb = load_flow(oa / "model.pt").state_dict(), load_flow(ob / "model.pt").state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.float32
def test_a_pack_does_not_resume_a_separate_runs_checkpoint(tmp_path: Path, data: Path) -> None:
    """The pack's rounding is not the separate run's: its fingerprint names the pack, so a
    separate run's checkpoint is set aside, not continued."""
    p = _file_params()
    out = tmp_path / "cfg" / "seed0"
    train_run(p, data, "toy", "L1_H4", 0, out, stop_after_epochs=1, log=lambda _: None)
    lines: list[str] = []
    outs = [out, tmp_path / "cfg" / "seed1"]
    metrics = train_runs(p, data, "toy", "L1_H4", [0, 1], outs, log=lines.append)
    assert metrics[0]["resumes"] == 0 and any("stale" in line for line in lines)


@pytest.mark.float32
def test_the_cli_trains_several_seeds_as_one_pack(tmp_path: Path, data: Path, capsys) -> None:
    params = tmp_path / "uci.yaml"
    text = QUICK.read_text().replace("max_epochs: 8", "max_epochs: 2")
    params.write_text(text.replace("train_subset: 20000", "train_subset: null"))
    cfg = tmp_path / "results" / "L1_H4"
    args = ["uci", "train", "--params", str(params), "--data", str(data), "--dataset", "toy",
            "--config", "L1_H4", "--out", str(cfg), "--threads", "1"]  # fmt: skip
    assert main(args + ["--seed", "0", "1", "2"]) == 0
    for s in (0, 1, 2):
        m = json.loads((cfg / f"seed{s}" / "metrics.json").read_text())
        assert m["seed"] == s and m["pack"]["members"] == 3
    assert "seeds 0 1 2" in capsys.readouterr().out
    assert main(args + ["--seed", "0", "0"]) == 2  # one BnafError line, no traceback
    assert "distinct seeds" in capsys.readouterr().err


def test_train_runs_refuses_mismatched_outputs(tmp_path: Path) -> None:
    with pytest.raises(BnafError, match="one output folder each"):
        train_runs(
            _file_params(), tmp_path / "x.h5", "toy", "L1_H4", [0, 1], [tmp_path], log=print
        )
