"""The VAE's training loop (Section 5.4, van den Berg et al.'s procedure): which batches an epoch
trains on, the KL weight each step gets, when early stopping ends a run, and that the reported
figures are what the saved model gives on the splits they name.

The training step and the validation figures are scripted where a rule is checked, so the
expected epochs, batch sizes and betas are worked out by hand from the rule, not read back from
a run.
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_vae_train import args as vae_args
from test_vae_train import frey_status, tiny_params

import bnaf.vae.train
from bnaf.cli import main
from bnaf.data.images import load_images
from bnaf.flows import count_parameters
from bnaf.vae.differences import DIFFERENCES
from bnaf.vae.evaluate import importance_nll, negative_elbo
from bnaf.vae.params import load_vae
from bnaf.vae.runs import RESULTS, VaeRun, runs
from bnaf.vae.table import read_metrics
from bnaf.vae.train import build_model

pytestmark = [pytest.mark.float32, pytest.mark.usefixtures("one_thread")]

ODD = 1 + 2**-40  # exact in float64, rounded to 1 in float32
TRAIN = 32  # training rows of frey_status(n=40) (tests/test_vae_train.py)


def _scripted_run(tmp_path: Path, monkeypatch, losses: list[float], **params) -> tuple[dict, list]:
    """Run ``vae train`` with validation -ELBO scripted to ``losses`` (per epoch) and a training
    step that records ``(batch size, beta)`` and returns ``size**2 (1 + 2**-40)`` as the batch's
    summed loss (exact in float64, not in float32: the epoch's sum must be kept in float64)."""
    steps: list[tuple[int, float]] = []
    calls = iter(losses)
    real = bnaf.vae.train.negative_elbo

    def step(model, optimiser, batch, beta):
        group = optimiser.param_groups[0]
        assert isinstance(optimiser, torch.optim.Adamax)  # the Sylvester code's optimiser
        assert (group["lr"], group["eps"]) == (params_of_run.lr, params_of_run.adamax_eps)
        steps.append((batch.shape[0], beta))
        return torch.tensor(batch.shape[0] ** 2 * ODD, dtype=torch.float64)

    def validation(model, data, batch_size=100, beta=1.0):
        value = next(calls, None)
        if value is None:  # the final evaluation
            return real(model, data, batch_size, beta)
        return torch.full((data.shape[0],), value)

    monkeypatch.setattr(bnaf.vae.train, "train_step", step)
    monkeypatch.setattr(bnaf.vae.train, "negative_elbo", validation)
    # an lr and eps of their own, not torch's defaults
    p = tiny_params(tmp_path / "vae.yaml", **({"lr": 3e-4, "adamax_eps": 1e-6} | params))
    params_of_run = load_vae(p)
    out = tmp_path / "run"
    assert main(vae_args(p, frey_status(tmp_path), out)) == 0
    return json.loads((out / "metrics.json").read_text()), steps


# (warm-up, early-stopping epochs, max epochs, validation per epoch,
#  epochs run, best epoch, stopped early): worked out from the rule of the Sylvester code,
#  "patience grows after each epoch >= warm-up without improvement; stop once it exceeds the
#  early-stopping epochs" (``params`` keep them >= 1)
STOPS = [
    (3, 2, 8, [5.0, 4.0, 4.5, 4.625, 4.75, 4.875, 4.9375, 5.0], 5, 2, True),
    # worse epochs during the warm-up do not count; an improvement resets the count
    (4, 1, 10, [5.0, 6.0, 7.0, 8.0, 3.0, 3.5, 3.625, 3.75, 3.875, 3.9375], 7, 5, True),
    (1, 1, 10, [5.0, 6.0, 4.0, 4.5, 4.25, 1.0, 2.0, 3.0, 4.0, 5.0], 5, 3, True),
    # equal is not better: it counts as an epoch without improvement
    (1, 1, 10, [5.0, 5.0, 5.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0], 3, 1, True),
    # the last epoch is reached before patience runs out
    (1, 2, 3, [1.0, 2.0, 3.0], 3, 1, False),
    (1, 50, 4, [1.0, 2.0, 3.0, 4.0], 4, 1, False),
]


@pytest.mark.parametrize("warmup, patience, max_epochs, losses, run, best, early", STOPS)
def test_early_stopping_counts_only_after_the_warm_up(
    tmp_path, monkeypatch, warmup, patience, max_epochs, losses, run, best, early
):
    metrics, _ = _scripted_run(
        tmp_path, monkeypatch, losses, warmup_epochs=warmup, early_stopping_epochs=patience,
        max_epochs=max_epochs, max_beta=1.0,
    )  # fmt: skip
    assert (metrics["epochs_run"], metrics["best_epoch"]) == (run, best)
    assert metrics["stopped_early"] is early
    assert [h["valid"] for h in metrics["history"]] == losses[:run]
    assert [h["epoch"] for h in metrics["history"]] == list(range(1, run + 1))


def test_each_epoch_trains_every_batch_with_its_kl_weight(tmp_path, monkeypatch):
    """32 rows in batches of 10: 10, 10, 10 and a last batch of 2, every epoch; beta =
    min(epoch / warm-up, max_beta) for every step of the epoch; the epoch's training loss is
    the per-sample mean of the batches' summed losses."""
    metrics, steps = _scripted_run(
        tmp_path, monkeypatch, [3.0, 2.0, 1.0, 0.5], warmup_epochs=4, max_beta=0.6,
        max_epochs=4, early_stopping_epochs=50, batch_size=10,
    )  # fmt: skip
    betas = [0.25, 0.5, 0.6, 0.6]
    assert steps == [(size, beta) for beta in betas for size in (10, 10, 10, 2)]
    history = metrics["history"]
    assert [h["beta"] for h in history] == betas
    assert [h["train"] for h in history] == [(3 * 100 + 4) * ODD / TRAIN] * 4
    with open(Path(tmp_path / "run" / "history.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["valid"]) for r in rows] == [3.0, 2.0, 1.0, 0.5]
    assert [float(r["train"]) for r in rows] == [h["train"] for h in history]


def test_a_non_finite_validation_loss_stops_the_run_with_one_line(tmp_path, monkeypatch, capsys):
    real = bnaf.vae.train.negative_elbo
    calls = iter([4.0, math.nan])

    def validation(model, data, batch_size=100, beta=1.0):
        value = next(calls, None)
        return (
            real(model, data, batch_size, beta)
            if value is None
            else torch.full((data.shape[0],), value)
        )

    monkeypatch.setattr(bnaf.vae.train, "negative_elbo", validation)
    p = tiny_params(tmp_path / "vae.yaml", max_epochs=3)
    out = tmp_path / "run"
    assert main(vae_args(p, frey_status(tmp_path), out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "validation loss became nan at epoch 2" in err[0]
    assert str(out) in err[0]
    assert not (out / "metrics.json").exists()


@pytest.mark.parametrize("config", ["bnaf-K2-H1d", "vae"])
def test_reported_figures_are_the_saved_model_on_the_named_splits(tmp_path, config):
    """Rebuild the saved model and evaluate it as the run says it did (noise seeded with
    ``seed + 1``; test -ELBO, then the importance-sampled NLL, then the validation -ELBO): the
    metrics must be those numbers, in nats and in bits per dimension (Frey faces, 560 pixels)."""
    p = tiny_params(tmp_path / "vae.yaml", max_epochs=2, nll_samples={"freyfaces": 5})
    status = frey_status(tmp_path)
    out = tmp_path / "run"
    argv = vae_args(p, status, out)
    argv[argv.index("--config") + 1] = config
    started = time.perf_counter()
    assert main(argv) == 0
    took = time.perf_counter() - started
    metrics = json.loads((out / "metrics.json").read_text())
    blob = torch.load(out / "model.pt", map_location="cpu", weights_only=True)

    params = load_vae(p)
    paths = json.loads(status.read_text())["paths"]
    data = load_images("freyfaces", paths, 1, params.check_sizes)
    assert blob["config"] == {
        "dataset": "freyfaces", "name": config, "shape": list(data.shape),
        "likelihood": "categorical", "latent": params.latent, "flow": blob["config"]["flow"],
    }  # fmt: skip
    flow = blob["config"]["flow"]  # read from the config's name, not from build_model
    assert (flow is None) == (config == "vae")
    assert flow is None or (flow["flows"], flow["hidden_factor"], flow["dim"]) == (2, 1, 8)
    model = build_model(params, config, data.shape, data.likelihood, 1)
    assert flow == (None if model.flow is None else model.flow.config)
    if model.flow is not None:  # random permutations, when asked for, follow the run's seed
        assert blob["config"]["flow"]["seed"] == 1
    assert not list(out.glob("checkpoint*")), "a finished run leaves no checkpoint behind"
    model.load_state_dict(blob["state_dict"])
    test, valid = torch.from_numpy(data.test), torch.from_numpy(data.valid)
    torch.manual_seed(2)
    test_elbo = negative_elbo(model, test, params.eval_batch)
    test_nll = importance_nll(model, test, 5, params.nll_chunk)
    valid_elbo = negative_elbo(model, valid, params.eval_batch)

    bits = 560 * math.log(2.0)
    expected = {
        "test_neg_elbo_nats": float(test_elbo.mean()),
        "test_nll_nats": float(test_nll.mean()),
        "test_neg_elbo": float(test_elbo.mean()) / bits,
        "test_nll": float(test_nll.mean()) / bits,
        "valid_neg_elbo": float(valid_elbo.mean()) / bits,
    }
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, rel=1e-6), key
    assert metrics["unit"] == "bits/dim" and metrics["nll_samples"] == 5
    assert metrics["test_nll"] < metrics["test_neg_elbo"]  # S > 1 tightens the bound
    assert metrics["sizes"] == {"train": TRAIN, "valid": len(data.valid), "test": len(data.test)}
    counts = metrics["parameters"]
    assert counts["total"] == count_parameters(model)
    if model.flow is None:  # the plain VAE: no flow, nothing amortised
        assert counts["flow_and_heads"] == counts["values_predicted_per_datapoint"] == 0
    else:
        heads = count_parameters(model.flow) + count_parameters(model.amortise)
        assert counts["flow_and_heads"] == heads and 0 < heads < counts["total"]
        assert counts["values_predicted_per_datapoint"] == model.flow.n_amortised > 0
    assert metrics["epochs_run"] == 2 and len(metrics["history"]) == 2
    assert metrics["timing"]["train_wall_s"] == pytest.approx(
        sum(h["wall_s"] for h in metrics["history"])
    )
    # every timing is a duration within the run (CPU seconds: at most its threads' share)
    threads = params.resources.threads
    for key, seconds in metrics["timing"].items():
        assert 0 <= seconds <= took * max(threads, 1) + 0.5, key
    assert (metrics["part"], metrics["dataset"], metrics["config"], metrics["seed"]) == (
        "vae", "freyfaces", config, 1,
    )  # fmt: skip
    assert metrics["budget"] == params.budget and metrics["differences"] == DIFFERENCES


def test_a_training_step_returns_its_batchs_summed_loss_and_steps_on_its_mean():
    """Eq. 12 per image, ``-log p(x|z_K) + beta (log q - log p(z_K))``: the step returns the
    batch's sum (the epoch's per-sample mean is built from it) and descends on the batch mean,
    from gradients cleared first (a stale gradient must not leak into the step)."""
    from bnaf.vae.model import VAE
    from bnaf.vae.train import train_step

    torch.manual_seed(0)
    model, reference = VAE((1, 28, 28), "bernoulli", 4), VAE((1, 28, 28), "bernoulli", 4)
    reference.load_state_dict(model.state_dict())
    x = torch.bernoulli(torch.full((6, 1, 28, 28), 0.3))
    beta, noise = 0.25, torch.get_rng_state()
    log_px, kl = reference.terms(x)
    expected = -log_px + beta * kl
    expected.mean().backward()
    for p in model.parameters():
        p.grad = torch.ones_like(p)  # stale
    before = {k: v.clone() for k, v in model.named_parameters()}
    torch.set_rng_state(noise)  # the same posterior sample as the reference's
    got = train_step(model, torch.optim.SGD(model.parameters(), lr=1.0), x, beta)
    assert got.dtype == torch.float64 and got.shape == () and not got.requires_grad
    assert float(got) == pytest.approx(float(expected.detach().sum()), rel=1e-5)
    for name, p in reference.named_parameters():
        step = before[name] - dict(model.named_parameters())[name].detach()
        torch.testing.assert_close(step, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_omniglot_batches_are_binarised_afresh_every_epoch(tmp_path, monkeypatch):
    """Omniglot's training images stay grey and every batch is drawn ~ Bernoulli(intensity)
    as it is trained on (dynamic binarisation), so one image is binarised differently from
    one epoch to the next."""
    from scipy.io import savemat

    from bnaf.data.images import OMNIGLOT_FILE

    rng = np.random.default_rng(5)
    mat = tmp_path / OMNIGLOT_FILE[0]
    mat.parent.mkdir(parents=True)
    savemat(mat, {"data": rng.random((784, 44)), "testdata": rng.random((784, 6))})
    status = tmp_path / "omniglot.status.json"
    status.write_text(
        json.dumps(
            {"dataset": "omniglot", "available": True, "paths": {OMNIGLOT_FILE[0]: str(mat)}}
        )
    )
    seen: list[torch.Tensor] = []

    def step(model, optimiser, batch, beta):
        seen.append(batch.clone())
        return torch.zeros((), dtype=torch.float64)

    monkeypatch.setattr(bnaf.vae.train, "train_step", step)
    p = tiny_params(
        tmp_path / "vae.yaml",
        max_epochs=2,
        batch_size=40,
        nll_samples={"freyfaces": 4, "omniglot": 2},
    )
    argv = vae_args(p, status, tmp_path / "run")
    argv[argv.index("--dataset") + 1] = "omniglot"
    assert main(argv) == 0
    assert len(seen) == 2  # 40 training images (44 less a tenth for validation), one batch
    for batch in seen:
        assert set(batch.unique().tolist()) == {0.0, 1.0}
    # the same 40 images in both epochs (in other orders): binarised once, they would hold the
    # same number of ones; drawn afresh, the counts differ (about 6,000 each)
    assert seen[0].sum() != seen[1].sum()
    # each epoch's permutation and then its draws, both from the run's own generator
    grey = load_images("omniglot", {OMNIGLOT_FILE[0]: str(mat)}, 1, False).train
    gen, x = torch.Generator().manual_seed(1), torch.from_numpy(grey)
    for batch in seen:
        order = torch.randperm(40, generator=gen)
        assert torch.equal(batch, torch.bernoulli(x[order], generator=gen))
    # what it wrote is what Table 2 reads, in Table 2's unit for Omniglot
    metrics = read_metrics(tmp_path / "run" / "metrics.json", VaeRun("omniglot", "bnaf-K2-H1d", 1),
                           load_vae(p).budget)  # fmt: skip
    assert metrics["unit"] == "nats"  # and its figures are the nats, unscaled (bits: Frey only)
    assert metrics["test_neg_elbo"] == metrics["test_neg_elbo_nats"] > 0
    assert metrics["test_nll"] == metrics["test_nll_nats"] > 0


def test_table2_holds_the_figures_its_runs_wrote(tmp_path: Path) -> None:
    """``vae table`` on real runs (both rows of the tiny params: plain VAE and B-NAF): each cell
    is its run's figure, in bits per dimension for Frey faces, with the run's device."""
    p = tiny_params(tmp_path / "vae.yaml", max_epochs=1)
    params = load_vae(p)
    status = frey_status(tmp_path)
    raw = tmp_path / "raw"
    raw.mkdir()
    status.rename(raw / "freyfaces.status.json")
    results = tmp_path / "results" / "vae"
    wrote = {}
    for r in runs(params):
        argv = vae_args(
            p, raw / "freyfaces.status.json", results / Path(r.path).relative_to(RESULTS)
        )
        argv[argv.index("--config") + 1] = r.config
        assert main(argv) == 0
        wrote[r.config] = json.loads(
            (results / Path(r.path).relative_to(RESULTS) / "metrics.json").read_text()
        )
    assert set(wrote) == {"vae", "bnaf-K2-H1d"}
    out = tmp_path / "t2.md"
    argv = [
        "vae",
        "table",
        "--params",
        str(p),
        "--results",
        str(results),
        "--status-dir",
        str(raw),
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    twin = json.loads(out.with_suffix(".json").read_text())
    for config, m in wrote.items():
        for key in ("test_neg_elbo", "test_nll"):
            cell = twin["ours"][config]["freyfaces"][key]
            assert cell["values"] == [m[key]] and cell["unit"] == "bits/dim"
        assert twin["timing"][f"freyfaces/{config}"]["device"] == "cpu"
    assert twin["budget"] == params.budget and twin["reduced"] is True
    # and the report's cost model measures each run's step time from the same files (the runs'
    # params as the budget to cost: tmp_path is the workdir, its runs are that budget's)
    from bnaf.report.cost import costs

    budget = tmp_path / "costed"
    budget.mkdir()
    (budget / "vae.yaml").write_text(p.read_text())
    rows = costs(tmp_path, ["table2"], paper_params=budget)
    assert [r.shape for r in rows] == ["freyfaces vae", "freyfaces bnaf-K2-H1d"]
    for r, m in zip(rows, wrote.values()):
        per_epoch = math.ceil(m["sizes"]["train"] / params.batch_size)
        assert r.measured_by == 1 and r.steps == params.max_epochs * per_epoch
        assert r.s_per_step == pytest.approx(m["timing"]["train_wall_s"] / r.steps)


@pytest.mark.parametrize(
    "option", ["--params", "--dataset", "--config", "--seed", "--status", "--out"]
)
def test_each_option_of_a_run_is_required_by_name(tmp_path: Path, capsys, option: str) -> None:
    """A run is named by all six: one left out is argparse's usage line naming it (exit 2),
    before anything is read or trained (no seed would mean an unseeded run)."""
    argv = vae_args(tmp_path / "vae.yaml", tmp_path / "s.json", tmp_path / "run")
    at = argv.index(option)
    del argv[at : at + 2]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"the following arguments are required: {option}" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("beta", [0.25, 1.0])
def test_a_training_step_descends_the_kl_weighted_negative_elbo(tmp_path: Path, beta: float):
    """Eq. 12 with the warm-up's KL weight: one step of plain gradient descent (lr 1) moves
    every weight by minus the gradient of ``mean(-log p(x|z) + beta KL)``, worked out apart on
    the same noise, and returns that mean times the batch size (the epoch sums them)."""
    from bnaf.vae.train import train_step

    params = load_vae(tiny_params(tmp_path / "vae.yaml"))
    paths = json.loads(frey_status(tmp_path).read_text())["paths"]
    data = load_images("freyfaces", paths, 1, params.check_sizes)
    batch = torch.from_numpy(data.train[:6]).double()
    model = build_model(params, "bnaf-K2-H1d", data.shape, data.likelihood, 1).double()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    torch.manual_seed(3)
    log_px, kl = model.terms(batch)
    expected = (-log_px + beta * kl).mean()
    grads = dict(zip(before, torch.autograd.grad(expected, list(model.parameters()))))
    torch.manual_seed(3)  # the same reparameterisation noise
    got = train_step(model, torch.optim.SGD(model.parameters(), lr=1.0), batch, beta)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected.detach() * 6, rtol=1e-12, atol=0)
    for name, value in model.named_parameters():
        torch.testing.assert_close(value.detach(), before[name] - grads[name], rtol=1e-12,
                                   atol=1e-12, msg=name)  # fmt: skip


def test_evaluation_batches_as_the_params_say(tmp_path: Path, monkeypatch) -> None:
    """``eval_batch`` and ``nll_chunk`` bound the memory of the final evaluation (the paper's
    5,000 importance samples): the run passes them on, so a smaller value fits a smaller GPU."""
    seen: dict[str, list] = {"elbo": [], "nll": []}
    elbo, nll = bnaf.vae.train.negative_elbo, bnaf.vae.train.importance_nll

    def elbo_spy(model, data, batch_size=100, beta=1.0):
        seen["elbo"].append(batch_size)
        return elbo(model, data, batch_size, beta)

    def nll_spy(model, data, samples=5000, chunk=1000):
        seen["nll"].append((samples, chunk))
        return nll(model, data, samples, chunk)

    monkeypatch.setattr(bnaf.vae.train, "negative_elbo", elbo_spy)
    monkeypatch.setattr(bnaf.vae.train, "importance_nll", nll_spy)
    p = tiny_params(tmp_path / "vae.yaml", max_epochs=1, eval_batch=7, nll_chunk=3)
    assert main(vae_args(p, frey_status(tmp_path), tmp_path / "run")) == 0
    assert seen["elbo"] and set(seen["elbo"]) == {7}
    assert seen["nll"] == [(4, 3)]  # nll_samples of freyfaces in tiny_params


@pytest.mark.parametrize("config", ["vae", "bnaf-K2-H1d"])
def test_batches_come_from_the_runs_own_stream(tmp_path: Path, monkeypatch, config: str) -> None:
    """Each epoch's batches are one permutation of the training rows drawn from a generator
    seeded with the run's seed, whatever the model draws from torch's global stream: every
    config of a seed trains on the same batches in the same order (a controlled comparison)."""
    seen: list[torch.Tensor] = []
    real = bnaf.vae.train.train_step

    def step(model, optimiser, batch, beta):
        seen.append(batch.clone())
        return real(model, optimiser, batch, beta)

    monkeypatch.setattr(bnaf.vae.train, "train_step", step)
    p = tiny_params(tmp_path / "vae.yaml", max_epochs=2, batch_size=10)
    status = frey_status(tmp_path)
    argv = vae_args(p, status, tmp_path / "run")
    argv[argv.index("--config") + 1] = config
    assert main(argv) == 0
    paths = json.loads(status.read_text())["paths"]
    x = torch.from_numpy(load_images("freyfaces", paths, 1, False).train)
    gen = torch.Generator().manual_seed(1)  # the run's seed (tests/test_vae_train.py args)
    expected = [x[i] for _ in range(2) for i in torch.randperm(TRAIN, generator=gen).split(10)]
    assert len(seen) == len(expected) == 8
    for got, want in zip(seen, expected):
        assert torch.equal(got, want)
