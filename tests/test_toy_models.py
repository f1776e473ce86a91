"""Glow and planar baselines, the B-NAF sampler's grid density, and the coverage measure."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian

from bnaf.core.errors import BnafError
from bnaf.core.stats import mean_se
from bnaf.flows import BNAF
from bnaf.flows.glow import Glow, load_glow, save_glow
from bnaf.flows.planar import PlanarFlow, load_planar, save_planar
from bnaf.toy.evaluate import bnaf_sampler_log_prob_grid, coverage


def _autograd_log_det(fn, x):
    return torch.stack([torch.linalg.slogdet(jacobian(fn, xi[None])[0, :, 0])[1] for xi in x])


@pytest.mark.parametrize("flows", [1, 5])
def test_planar_log_det_inverse_and_constraint(flows):
    torch.manual_seed(flows)
    model = PlanarFlow(2, flows=flows, init_std=1.0).double()
    z = torch.randn(6, 2, dtype=torch.float64)
    x, log_det = model(z)
    np.testing.assert_allclose(log_det.detach(), _autograd_log_det(lambda v: model(v)[0], z))
    np.testing.assert_allclose(model.inverse(x.detach()), z, atol=1e-9)
    assert ((model.w * model._u_hat()).sum(-1) >= -1).all()  # invertibility constraint
    xs, log_q = model.sample(50)
    np.testing.assert_allclose(model.log_prob(xs.detach()), log_q.detach(), atol=1e-8)


def test_glow_log_det_and_actnorm_init():
    torch.manual_seed(0)
    model = Glow(2, depth=3, hidden=8).double()
    x = torch.randn(500, 2, dtype=torch.float64) * 3 + 1
    model(x)  # first call: data-dependent actnorm initialisation
    h = (x + model.bias[0]) * model.log_scale[0].exp()
    np.testing.assert_allclose(h.mean(0).detach(), 0, atol=1e-9)
    np.testing.assert_allclose(h.std(0).detach(), 1, atol=1e-3)
    for p in model.parameters():  # give the zero-initialised couplings something to do
        p.data.add_(0.1 * torch.randn_like(p))
    model.eval()
    xs = x[:5]
    _, log_det = model(xs)
    np.testing.assert_allclose(log_det.detach(), _autograd_log_det(lambda v: model(v)[0], xs))


def test_baseline_save_load_round_trip(tmp_path):
    g, p = Glow(2, depth=2, hidden=4), PlanarFlow(2, flows=3)
    save_glow(g, tmp_path / "g.pt")
    save_planar(p, tmp_path / "p.pt")
    x = torch.randn(7, 2)
    g.eval()
    torch.testing.assert_close(load_glow(tmp_path / "g.pt").eval().log_prob(x), g.log_prob(x))
    torch.testing.assert_close(load_planar(tmp_path / "p.pt")(x)[0], p(x)[0])


@pytest.mark.float32  # a float32 model, as trained
def test_bnaf_sampler_grid_density_is_exact_and_normalised():
    torch.manual_seed(1)
    model = BNAF(2, flows=1, layers=2, hidden_factor=4).double()
    with torch.no_grad():
        y = torch.randn(4, 2, dtype=torch.float64)
        x, log_det = model(y)
        log_q = -0.5 * (y.square().sum(-1) + 2 * math.log(2 * math.pi)) - log_det
    # A grid through (x1, x2) of each sample: its cell must carry the sample's log q.
    for (x1, x2), want in zip(x.numpy(), log_q.numpy()):
        centres = np.array(sorted([x1, x2]))
        got = bnaf_sampler_log_prob_grid(model, centres)
        i, j = int(np.argmax(centres == x1)), int(np.argmax(centres == x2))
        assert got[i, j] == pytest.approx(want, abs=1e-4)
    # On a grid covering the (bounded) range, q integrates to one.
    lim = float(x.abs().max()) + 6
    step = 0.05
    c = np.arange(-lim, lim, step) + step / 2
    mass = np.exp(bnaf_sampler_log_prob_grid(model, c)).sum() * step**2
    assert mass == pytest.approx(1.0, abs=2e-2)


def test_coverage():
    rng = np.random.default_rng(0)
    log_p = np.log(rng.random((30, 30)) + 1e-3)
    assert coverage(log_p, log_p, 0.99) == pytest.approx(0.99, abs=0.01)
    # Target with two equal modes; the model has only the first: coverage about one half.
    p = np.full((10, 10), 1e-12)
    p[2, 2] = p[7, 7] = 1.0
    q = np.full((10, 10), 1e-12)
    q[2, 2] = 1.0
    assert coverage(np.log(p), np.log(q), 0.99) == pytest.approx(0.5, abs=1e-6)
    # Cells outside the model's support (log q = -inf) are never in its HDR.
    q_inf = np.where(q > 1e-6, 0.0, -np.inf)
    assert coverage(np.log(p), q_inf, 0.99) == pytest.approx(0.5, abs=1e-6)


def test_mean_se():
    m, se = mean_se(np.array([1.0, 2.0, 3.0, 4.0]))
    assert m == 2.5 and se == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)


def _twin(rows: dict[tuple[str, str], tuple[float, float]]) -> dict:
    """A toy.json with density rows (dataset, model) -> (mean, se) and no energy rows."""
    density = [
        {"dataset": d, "model": m, "log_likelihood": {"mean": mean, "se": se}}
        for (d, m), (mean, se) in rows.items()
    ]
    return {"part": "toy", "budget": "paper", "density": density, "energy": []}


def test_reference_comparison_flags_moves_beyond_the_combined_standard_error(tmp_path):
    import json

    from bnaf.toy.table import MOVED_SE, compare, load_reference

    assert MOVED_SE == 3.0
    reference = _twin(
        {("8gaussians", "bnaf"): (-2.850, 0.004), ("2spirals", "glow"): (-3.0, 0.01)}
    )
    new = _twin(
        {
            ("8gaussians", "bnaf"): (-2.830, 0.003),  # +0.020 > 3 * 0.005: moved
            ("2spirals", "glow"): (-3.02, 0.01),  # -0.02 < 3 * 0.01414: within
            ("checkerboard", "bnaf"): (-3.5, 0.01),  # not in the reference
        }
    )
    rows = {(r["target"], r["model"]): r for r in compare(new, reference)}
    moved = rows[("8gaussians", "bnaf")]
    assert moved["moved"] is True
    assert moved["difference"] == pytest.approx(0.020)
    assert moved["combined_se"] == pytest.approx(0.005)
    assert rows[("2spirals", "glow")]["moved"] is False
    assert rows[("checkerboard", "bnaf")]["moved"] is None
    # The committed file is read with its provenance; anything else is refused by name.
    folder = tmp_path / "reference"
    folder.mkdir()
    (folder / "toy.json").write_text(json.dumps(reference))
    (folder / "provenance.json").write_text(json.dumps({"commit": "abc"}))
    assert load_reference(folder / "toy.json")["provenance"]["commit"] == "abc"
    # the comparison names the file it read and where it came from (or that nothing says so)
    from bnaf.toy.table import _comparison_md

    md = "\n".join(_comparison_md(compare(new, reference), load_reference(folder / "toy.json")))
    assert f"`{folder / 'toy.json'}`" in md and "commit abc" in md
    (folder / "provenance.json").unlink()
    md = "\n".join(_comparison_md(compare(new, reference), load_reference(folder / "toy.json")))
    assert "no provenance.json beside it" in md
    (folder / "toy.json").write_text(json.dumps({**reference, "budget": "quick"}))
    with pytest.raises(BnafError, match="toy.json"):
        load_reference(folder / "toy.json")
    (folder / "toy.json").write_text("{not json")
    with pytest.raises(BnafError, match="toy.json"):
        load_reference(folder / "toy.json")
    # a row without what the comparison reads is one line naming the row's key, not a KeyError
    del reference["density"][1]["log_likelihood"]["se"]
    (folder / "toy.json").write_text(json.dumps(reference))
    with pytest.raises(
        BnafError, match=r"toy\.json: missing key 'density\[1\]\.log_likelihood\.se'$"
    ):
        load_reference(folder / "toy.json")


@pytest.mark.parametrize("budget", ["paper", "quick"])
def test_toy_table_reads_the_reference_its_params_name_at_the_paper_budget(
    budget: str, tmp_path, capsys
) -> None:
    import yaml

    from bnaf.cli import main

    root = Path(__file__).resolve().parents[1]
    params = yaml.safe_load((root / "params" / "paper" / "toy.yaml").read_text())
    params["toy"]["budget"] = budget
    reference = tmp_path / "ref" / "toy.json"
    params["toy"]["reference"] = str(reference)
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(params))
    argv = ["toy", "table", "--params", str(path), "--md", str(tmp_path / "t.md")]
    argv += ["--json", str(tmp_path / "t.json")]
    # none yet (a first run, or a refresh): the paper-budget table says so and goes on
    assert main(argv) == 0
    said = "No reference at" in (tmp_path / "t.md").read_text()
    assert said == (budget == "paper")
    missing = json.loads((tmp_path / "t.json").read_text()).get("reference_comparison")
    assert (missing == {"missing": str(reference)}) == (budget == "paper")
    # one that is there but unreadable: the paper budget fails on it; a reduced one never reads
    reference.parent.mkdir()
    reference.write_text("{not json")
    capsys.readouterr()
    assert (main(argv) == 2) == (budget == "paper")
    assert ("toy.json" in capsys.readouterr().err) == (budget == "paper")


def test_committed_paper_toy_reference_is_readable_and_small() -> None:
    from bnaf.toy.table import load_reference

    root = Path(__file__).resolve().parents[1]
    folder = root / "reference" / "paper-toy"
    ref = load_reference(folder / "toy.json")  # what the paper-budget toy table reads
    assert len(ref["provenance"]["commit"]) == 40 and ref["provenance"]["wall_time_s"] > 0
    runs = {(r["dataset"], r["model"]) for r in ref["density"]}
    runs |= {(r["energy"], r["model"]) for r in ref["energy"]}
    assert len(runs) == 14  # the whole toy part of params/paper/toy.yaml
    assert sum(f.stat().st_size for f in folder.iterdir()) <= 2 * 2**20  # at most 2 MB
