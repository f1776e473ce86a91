"""Bad inputs and faults, table-driven: every case must end in exit code 2 with ONE line on
stderr (``error: ...``) naming the culprit, no traceback, and no output file written.

Cases cover params (ranges, choices, unknown keys, unreadable files), raw files of every
format, prepared files, models, results and selections, and outputs that cannot be written.
Checkpoints never fail a run: they are set aside and the run starts afresh
(tests/test_checkpoint.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from uci_fixture import write_fixture_files
from uci_synthetic import write_prepared

from bnaf.cli import main
from bnaf.flows import BNAF, save_flow

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "params" / "quick"


@dataclass
class Case:
    #: (tmp folder) -> (argv, the text the error line must contain, outputs that must not exist)
    setup: Callable[[Path], tuple[list[str], str, list[Path]]]


def _params(tmp: Path, part: str, dotted: str, value: object) -> Path:
    data = yaml.safe_load((QUICK / f"{part}.yaml").read_text())
    *parents, last = dotted.split(".")
    node = data[part]
    for key in parents:
        node = node[key]
    node[last] = value
    path = tmp / f"{part}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _uci_train(tmp: Path, params: Path | None = None, data: Path | None = None, **kw) -> list:
    data = data or write_prepared(tmp / "ok.h5")
    argv = ["uci", "train", "--params", str(params or QUICK / "uci.yaml"), "--data", str(data)]
    argv += ["--dataset", kw.get("dataset", "power"), "--config", kw.get("config", "L1_H2")]
    return [*argv, "--seed", "0", "--out", str(tmp / "run")]


def bad_uci(dotted: str, value: object, named: str) -> Case:
    def setup(tmp: Path):
        argv = _uci_train(tmp, _params(tmp, "uci", dotted, value))
        return argv, named, [tmp / "run" / "metrics.json"]

    return Case(setup)


def bad_part(part: str, stage: list[str], dotted: str, value: object, named: str) -> Case:
    def setup(tmp: Path):
        params = _params(tmp, part, dotted, value)
        argv = [*stage, "--params", str(params)]
        if part == "toy":
            argv += ["--kind", "density", "--target", "8gaussians", "--model", "bnaf"]
            argv += ["--out", str(tmp / "run")]
        elif part == "normalisation":
            argv += ["--md", str(tmp / "n.md"), "--json", str(tmp / "n.json")]
        return argv, named, [tmp / "run" / "metrics.json", tmp / "n.json"]

    return Case(setup)


def bad_yaml(text: str, named: str) -> Case:
    def setup(tmp: Path):
        path = tmp / "uci.yaml"
        path.write_text(text)
        return _uci_train(tmp, path), named, [tmp / "run" / "metrics.json"]

    return Case(setup)


def bad_data(make: Callable[[Path], Path], named: str, dataset: str = "power") -> Case:
    def setup(tmp: Path):
        path = make(tmp)
        return _uci_train(tmp, data=path, dataset=dataset), named, [tmp / "run" / "metrics.json"]

    return Case(setup)


def _truncated_h5(tmp: Path) -> Path:
    good = write_prepared(tmp / "good.h5")
    path = tmp / "cut.h5"
    path.write_bytes(good.read_bytes()[:3000])
    return path


def _text_file(tmp: Path) -> Path:
    path = tmp / "data.h5"
    path.write_text("these are not the splits you are looking for\n")
    return path


def _h5_with(tmp: Path, **splits: np.ndarray) -> Path:
    path = tmp / "odd.h5"
    with h5py.File(path, "w") as f:
        for name, x in splits.items():
            f.create_dataset(name, data=x)
        f.attrs["dataset"] = "power"
    return path


def _nan_row(tmp: Path) -> Path:
    x = np.ones((20, 3), np.float32)
    x[3, 1] = np.nan
    return _h5_with(tmp, train=x, validation=np.ones((5, 3), np.float32), test=x[:5] * 0)


def _widths(tmp: Path) -> Path:
    one = np.ones((20, 3), np.float32)
    return _h5_with(tmp, train=one, validation=np.ones((5, 4), np.float32), test=one[:5])


def _no_test(tmp: Path) -> Path:
    return _h5_with(
        tmp, train=np.ones((20, 3), np.float32), validation=np.ones((5, 3), np.float32)
    )


def _other_dataset(tmp: Path) -> Path:
    path = write_prepared(tmp / "gas.h5")
    with h5py.File(path, "a") as f:
        f.attrs["dataset"] = "gas"
    return path


def bad_raw(dataset: str, relative: str, content: bytes | None, named: str) -> Case:
    def setup(tmp: Path):
        raw = tmp / "raw"
        write_fixture_files(raw)
        path = raw / relative
        if content is None:
            path.unlink()
        else:
            path.write_bytes(content)
        out = tmp / f"{dataset}.h5"
        return ["data", "prepare", dataset, "--raw-dir", str(raw), "--out", str(out)], named, [out]

    return Case(setup)


def _bsds300(**shapes: tuple[int, ...]) -> bytes:
    """The bytes of a BSDS300.hdf5 with splits of ``shapes`` (default 20 x 63 each)."""
    import io

    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for split in ("train", "validation", "test"):
            f[split] = np.zeros(shapes.get(split, (20, 63)), dtype=np.float32)
    return buf.getvalue()


def _model(tmp: Path, content: bytes | None) -> Path:
    path = tmp / "results" / "uci" / "power" / "L1_H2" / "seed0" / "model.pt"
    path.parent.mkdir(parents=True)
    save_flow(BNAF(6, flows=1, hidden_factor=2), path, dataset="power", seed=0)
    if content is not None:
        path.write_bytes(content if content else path.read_bytes()[:500])
    return path


class _Evil:
    def __reduce__(self):
        return (print, ("this ran",))


def bad_model(content: bytes | None, named: str) -> Case:
    def setup(tmp: Path):
        path = _model(tmp, content)
        if content == b"evil":
            torch.save({"config": {"dim": 6}, "state_dict": _Evil()}, path)
        params = QUICK / "normalisation.yaml"
        argv = ["normalisation", "--params", str(params), "--uci-models", str(path)]
        argv += [
            "--uci-datasets",
            "power",
            "--md",
            str(tmp / "n.md"),
            "--json",
            str(tmp / "n.json"),
        ]
        return argv, named, [tmp / "n.json"]

    return Case(setup)


def _metrics(tmp: Path, seed: int = 0, **change) -> Path:
    m = {"dataset": "power", "config": "L1_H2", "seed": seed, "budget": "quick", "layers": 1,
         "hidden_factor": 2, "validation": {"log_likelihood": 0.1},
         "test": {"log_likelihood": 0.2}, "parameters": {"paper": 1, "full": 2},
         "best_epoch": 1, "epochs_run": 2, "wall_s": 1.0, "model": {"dim": 6},
         "reduced": True, "device": "cpu", "train_samples": 10, "hardware": "cpu"}  # fmt: skip
    m.update(change)
    path = tmp / "results" / "uci" / "power" / "L1_H2" / f"seed{seed}" / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(m))
    return path


def bad_metrics(write: Callable[[Path], Path], named: str) -> Case:
    def setup(tmp: Path):
        files = [str(_metrics(tmp, 0)), str(write(tmp))]
        argv = ["uci", "select", "--params", str(QUICK / "uci.yaml"), "--dataset", "power"]
        return (
            [*argv, "--metrics", *files, "--out", str(tmp / "sel.json")],
            named,
            [tmp / "sel.json"],
        )

    return Case(setup)


def _raw_text(tmp: Path, text: str, name: str = "metrics.json") -> Path:
    path = tmp / "results" / "uci" / "power" / "L1_H2" / "seed1" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def bad_selection(text: str, named: str) -> Case:
    def setup(tmp: Path):
        sel = tmp / "selection.json"
        sel.write_text(text)
        status = tmp / "power.status.json"
        status.write_text(json.dumps({"dataset": "power", "available": True}))
        argv = ["uci", "table", "--params", str(QUICK / "uci.yaml"), "--selections", str(sel)]
        argv += ["--status", str(status), "--md", str(tmp / "t.md"), "--json", str(tmp / "t.json")]
        return [*argv, "--csv", str(tmp / "t.csv")], named, [tmp / "t.json", tmp / "t.md"]

    return Case(setup)


def bad_toy_metrics(text: str, named: str) -> Case:
    def setup(tmp: Path):
        path = tmp / "results" / "toy" / "density" / "8gaussians" / "bnaf" / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(text)
        argv = ["toy", "table", "--params", str(QUICK / "toy.yaml"), "--density", str(path)]
        return (
            [*argv, "--md", str(tmp / "t.md"), "--json", str(tmp / "t.json")],
            named,
            [tmp / "t.json"],
        )

    return Case(setup)


def _selection(tmp: Path, **change: object) -> str:
    from bnaf.uci.results import read_metrics
    from bnaf.uci.select import select

    doc = select([read_metrics(_metrics(tmp, k)) for k in (0, 1)], "power", 1)
    return json.dumps(doc | change)


def bad_selection_doc(change: dict, named: str) -> Case:
    r"""A selection as ``select`` writes it, with ``change`` (``None``: the key removed)."""

    def setup(tmp: Path):
        doc = json.loads(_selection(tmp))
        for key, value in change.items():
            *parents, last = key.split(".")
            node = doc
            for k in parents:
                node = node[k]
            if value is None:
                del node[last]
            else:
                node[last] = value
        return bad_selection(json.dumps(doc), named).setup(tmp)

    return Case(setup)


def bad_status(text: str, named: str) -> Case:
    def setup(tmp: Path):
        status = tmp / "power.status.json"
        status.write_text(text)
        argv = ["uci", "table", "--params", str(QUICK / "uci.yaml"), "--status", str(status)]
        argv += ["--md", str(tmp / "t.md"), "--json", str(tmp / "t.json")]
        return [*argv, "--csv", str(tmp / "t.csv")], named, [tmp / "t.json", tmp / "t.md"]

    return Case(setup)


def _toy_metrics(**change: object) -> str:
    m = {"part": "toy", "kind": "density", "target": "8gaussians", "model": "bnaf",
         "budget": "quick", "seed": 0, "wall_time_s": 1.5, "parameters": 100,
         "config": {"optimiser": {"name": "adam", "lr": 0.1, "iterations": 5, "batch_size": 8}},
         "test": {"log_likelihood": -2.5, "log_likelihood_se": 0.01, "samples": 100,
                  "best_achievable": None}}  # fmt: skip
    return json.dumps(m | change)


def bad_vae_metrics(change: dict, named: str) -> Case:
    r"""Every Frey faces run of the quick budget with a metrics file like ``vae train``'s,
    ``change`` made, and the dataset's status available: ``vae table`` must refuse it."""

    def setup(tmp: Path):
        from bnaf.vae.params import load_vae
        from bnaf.vae.runs import RESULTS, runs

        raw = tmp / "raw"
        raw.mkdir()
        status = {"dataset": "freyfaces", "available": True, "paths": {}}
        (raw / "freyfaces.status.json").write_text(json.dumps(status))
        for r in runs(load_vae(QUICK / "vae.yaml"), ["freyfaces"]):
            m = {"part": "vae", "dataset": r.dataset, "config": r.config, "seed": r.seed,
                 "budget": "quick", "unit": "bits/dim", "test_neg_elbo": 4.6, "test_nll": 4.5,
                 "valid_neg_elbo": 4.7, "nll_samples": 10, "epochs_run": 2,
                 "sizes": {"train": 100},
                 "timing": {"train_wall_s": 1.0, "epoch_cpu_s_mean": 0.5, "test_nll_cpu_s": 0.1},
                 "environment": {"device": "cpu"}}  # fmt: skip
            path = tmp / "results" / Path(r.path).relative_to(RESULTS) / "metrics.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(m | change))
        argv = ["vae", "table", "--params", str(QUICK / "vae.yaml"), "--status-dir", str(raw)]
        argv += ["--results", str(tmp / "results"), "--out", str(tmp / "t2.md")]
        return argv, named, [tmp / "t2.md", tmp / "t2.json"]

    return Case(setup)


def bad_grid(write: Callable[[Path], None], named: str) -> Case:
    r"""``toy figure`` on one ``grid.npz`` made by ``write``."""

    def setup(tmp: Path):
        grid = tmp / "results" / "toy" / "density" / "8gaussians" / "bnaf" / "grid.npz"
        grid.parent.mkdir(parents=True)
        write(grid)
        argv = ["toy", "figure", "--figure", "figure2", "--params", str(QUICK / "toy.yaml")]
        return [*argv, "--grids", str(grid), "--out", str(tmp / "f.png")], named, [tmp / "f.png"]

    return Case(setup)


def _grid(path: Path, **arrays: object) -> None:
    base = {"centres": np.linspace(-1, 1, 4), "log_density": np.zeros((4, 4)),
            "target": "8gaussians", "model": "bnaf"}  # fmt: skip
    np.savez(path, **{k: v for k, v in (base | arrays).items() if v is not None})


def status_for_prepare(status: dict, named: str) -> Case:
    r"""``data prepare power`` given a status file: only power's own, available status lets it
    prepare (a copied status would stamp another dataset's checksums into the HDF5 file)."""

    def setup(tmp: Path):
        path = tmp / "power.status.json"
        path.write_text(json.dumps(status))
        out = tmp / "power.h5"
        argv = ["data", "prepare", "power", "--raw-dir", str(tmp / "raw"), "--out", str(out)]
        return [*argv, "--status", str(path)], named, [out]

    return Case(setup)


def unwritable_output(tmp_setup: str) -> Case:
    def setup(tmp: Path):
        blocker = tmp / "afile"
        blocker.write_text("a file where a folder should be")
        files = [str(_metrics(tmp, 0))]
        argv = ["uci", "select", "--params", str(QUICK / "uci.yaml"), "--dataset", "power"]
        out = blocker / "sel.json"
        return [*argv, "--metrics", *files, "--out", str(out)], str(blocker), [out]

    return Case(setup)


CASES: dict[str, Case] = {
    # params: ranges, choices, unknown keys, unreadable files
    "clip_norm negative": bad_uci("train.clip_norm", -1, "clip_norm"),
    "lr zero": bad_uci("train.lr", 0, "train.lr"),
    "lr negative": bad_uci("train.lr", -0.1, "train.lr"),
    "max_epochs zero": bad_uci("train.max_epochs", 0, "max_epochs"),
    "batch_size zero": bad_uci("train.batch_size", 0, "batch_size"),
    "polyak above one": bad_uci("train.polyak", 2, "polyak"),
    "flows zero": bad_uci("flow.flows", 0, "flow.flows"),
    "residual misspelt": bad_uci("flow.residual", "gatd", "gatd"),
    "lr_decay one": bad_uci("train.lr_decay", 1.0, "lr_decay"),
    "unknown key": bad_uci("train.learning_rate", 0.1, "learning_rate"),
    "seeds negative": bad_uci("seeds", [-1], "seeds"),
    "grid layers zero": bad_uci("grid.layers", [0], "grid.layers"),
    "lr a string": bad_uci("train.lr", "fast", "train.lr"),
    "toy iterations negative": bad_part(
        "toy", ["toy", "train"], "density.bnaf.optimiser.iterations", -5, "iterations"
    ),
    "toy hidden_factor zero": bad_part(
        "toy", ["toy", "train"], "density.bnaf.flow.hidden_factor", 0, "hidden_factor"
    ),
    "normalisation mc_samples one": bad_part(
        "normalisation", ["normalisation"], "toy.mc_samples", 1, "mc_samples"
    ),
    "params not YAML": bad_yaml("uci: [unclosed\n", "not valid YAML"),
    "params not a mapping": bad_yaml("- 1\n- 2\n", "expected a mapping"),
    "params without section": bad_yaml("toy: {}\n", "missing section 'uci'"),
    # prepared files
    "data missing": bad_data(lambda t: t / "none.h5", "none.h5"),
    "data truncated": bad_data(_truncated_h5, "cut.h5"),
    "data not HDF5": bad_data(_text_file, "data.h5"),
    "data without test": bad_data(_no_test, "test"),
    "data of two widths": bad_data(_widths, "one width"),
    "data with NaN": bad_data(_nan_row, "row 3"),
    "data of another dataset": bad_data(_other_dataset, "'gas'"),
    # raw files of every MAF format
    "power npy missing": bad_raw("power", "power/data.npy", None, "data.npy"),
    "power npy garbage": bad_raw("power", "power/data.npy", b"\x93NUMPY garbage", "data.npy"),
    "gas pickle garbage": bad_raw("gas", "gas/ethylene_CO.pickle", b"not a pickle", "pickle"),
    "gas pickle with code": bad_raw(
        "gas", "gas/ethylene_CO.pickle", b"cos\nsystem\n(S'echo hi'\ntR.", "refusing"
    ),
    "miniboone csv garbage": bad_raw(
        "miniboone", "miniboone/data.npy", b"\x00\x01not numpy", "data.npy"
    ),
    "hepmass csv missing": bad_raw("hepmass", "hepmass/1000_train.csv", None, "1000_train.csv"),
    "bsds300 h5 garbage": bad_raw("bsds300", "BSDS300/BSDS300.hdf5", b"junk", "BSDS300.hdf5"),
    "bsds300 splits of two widths": bad_raw(
        "bsds300", "BSDS300/BSDS300.hdf5", _bsds300(validation=(20, 62)), "different widths"
    ),
    "bsds300 split not a table": bad_raw(
        "bsds300", "BSDS300/BSDS300.hdf5", _bsds300(test=(20,)), "2-D"
    ),
    # models
    "model truncated": bad_model(b"", "model.pt"),
    "model not torch": bad_model(b"plain text, no tensors", "model.pt"),
    "model with code": bad_model(b"evil", "model.pt"),
    # results
    "metrics malformed": bad_metrics(lambda t: _raw_text(t, "{not json"), "not valid JSON"),
    "metrics not an object": bad_metrics(lambda t: _raw_text(t, "[1, 2]"), "expected an object"),
    "metrics without test": bad_metrics(
        lambda t: _raw_text(t, json.dumps({"dataset": "power"})), "missing key"
    ),
    "metrics NaN": bad_metrics(
        lambda t: _metrics(t, 1, test={"log_likelihood": float("nan")}), "test.log_likelihood"
    ),
    "metrics in another seed's slot": bad_metrics(
        lambda t: _raw_text(t, _metrics(t, 0).read_text()), "seed0"
    ),
    "metrics of another dataset": bad_metrics(lambda t: _metrics(t, 1, dataset="gas"), "'gas'"),
    "selection malformed": bad_selection("{", "selection.json"),
    "toy metrics malformed": bad_toy_metrics("{oops", "metrics.json"),
    "selection not an object": bad_selection("[1, 2]", "the file is a list, expected an object"),
    "selection without its test mean": bad_selection_doc({"test_mean": None}, "'test_mean'"),
    "selection's config without seeds": bad_selection_doc(
        {"configs.L1_H2.seeds": None}, "missing key 'configs.L1_H2.seeds'"
    ),
    "selection of a config it lacks": bad_selection_doc(
        {"selected": "L9_H9"}, "'L9_H9' is not among its configs"
    ),
    "selection with a NaN mean": bad_selection_doc({"test_mean": float("nan")}, "'test_mean' is"),
    "status not an object": bad_status("[true]", "power.status.json: the file is a list"),
    "status availability a string": bad_status(
        json.dumps({"dataset": "power", "available": "no"}), "'available' is 'no'"
    ),
    "toy metrics a list": bad_toy_metrics("[1]", "the file is a list, expected an object"),
    "toy metrics without its standard error": bad_toy_metrics(
        _toy_metrics(test={"log_likelihood": -2.5, "samples": 100, "best_achievable": None}),
        "missing key 'test.log_likelihood_se'",
    ),
    "toy metrics of another budget": bad_toy_metrics(
        _toy_metrics(budget="paper"), "a run of the budget 'paper', not 'quick'"
    ),
    "vae metrics in another unit": bad_vae_metrics(
        {"unit": "nats"}, "figures in nats; Table 2 gives freyfaces in bits/dim"
    ),
    "vae metrics of another budget": bad_vae_metrics(
        {"budget": "paper"}, "a run of the budget 'paper', not 'quick'"
    ),
    "vae metrics without the device": bad_vae_metrics(
        {"environment": {}}, "missing key 'environment.device'"
    ),
    "vae metrics of another run": bad_vae_metrics({"seed": 7}, "seed7, not results/vae"),
    "vae metrics with an infinite NLL": bad_vae_metrics(
        {"test_nll": float("inf")}, "'test_nll' is inf, expected a finite number"
    ),
    "grid not a zip": bad_grid(lambda p: p.write_text("plain text"), "not a readable grid file"),
    "grid with objects": bad_grid(
        lambda p: _grid(p, model=np.array([{"code": 1}], dtype=object)), "not a readable grid"
    ),
    "grid without densities": bad_grid(
        lambda p: _grid(p, log_density=None), "a grid file without log_density"
    ),
    "grid of another size": bad_grid(
        lambda p: _grid(p, log_density=np.zeros((4, 3))), "log_density of shape (4, 3)"
    ),
    "prepare with another dataset's status": status_for_prepare(
        {"dataset": "gas", "available": True}, "the status of 'gas', not of 'power'"
    ),
    "prepare with an unavailable status": status_for_prepare(
        {"dataset": "power", "available": False, "reason": "offline"}, "not available: offline"
    ),
    # outputs that cannot be written
    "output under a file": unwritable_output("file"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_clear_line(name: str, tmp_path: Path, capsys) -> None:
    argv, named, outputs = CASES[name].setup(tmp_path)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, f"exit code {code}; stderr: {err[-2000:]}"
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    assert named in lines[0], lines[0]
    for path in outputs:
        assert not path.exists(), f"{path} was written"
        assert not list(path.parent.glob(f".{path.name}.*")) if path.parent.exists() else True


def test_at_least_forty_cases() -> None:
    assert len(CASES) >= 40
