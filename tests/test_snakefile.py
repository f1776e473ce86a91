"""The Snakemake workflow's structure: config schema, default target, logs, local rules, resources.

The workflow is parsed with Snakemake's API (no job runs) from a temporary copy, at both budgets.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from snakemake.api import SnakemakeApi
from snakemake.exceptions import WorkflowError
from snakemake.settings.types import (
    ConfigSettings,
    OutputSettings,
    ResourceSettings,
    StorageSettings,
)
from snakemake.utils import validate

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
BUDGETS = ("quick", "paper")
#: rules that train models: they must be sized for a cluster, GPU included
TRAINING = {"toy_train", "uci_train", "vae_train"}
#: training rules whose device may be a GPU (params device: auto); toy models run on the CPU
GPU_CAPABLE = {"uci_train", "vae_train"}


def _config(budget: str) -> dict[str, Any]:
    config: dict[str, Any] = {"params": f"params/{budget}"}
    for path in sorted(glob.glob(str(ROOT / "params" / budget / "*.yaml"))):
        config.update(yaml.safe_load(Path(path).read_text()))
    return config


def _copy(tmp_path: Path) -> Path:
    for name in ("Snakefile", "workflow", "params"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    return tmp_path


@pytest.fixture(scope="module", params=BUDGETS)
def parsed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    work = _copy(tmp_path_factory.mktemp(request.param))
    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        wf = api.workflow(
            resource_settings=ResourceSettings(),
            config_settings=ConfigSettings(config={"params": f"params/{request.param}"}),
            storage_settings=StorageSettings(),
            snakefile=work / "Snakefile",
            workdir=work,
        )
        yield wf._workflow


@pytest.mark.parametrize("budget", BUDGETS)
def test_params_match_the_schema(budget: str) -> None:
    validate(_config(budget), str(SCHEMA))


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("uci", "seedz"), [0], "seedz"),
        (("toy", "resources", "gpus"), 1, "gpus"),
        (("vae", "resources", "gpu"), -1, "-1"),
        (("tyo",), {}, "tyo"),
        (("report", "parts", 0, "jsn"), "x", "jsn"),
    ],
)
def test_a_bad_key_fails_naming_it(path: tuple, value: Any, named: str) -> None:
    config = _config("quick")
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(WorkflowError) as err:
        validate(config, str(SCHEMA))
    assert named in str(err.value.__cause__ or err.value) or named in str(err.value)


def test_snakemake_refuses_a_misspelt_key_at_start(tmp_path: Path) -> None:
    work = _copy(tmp_path)
    toy = work / "params" / "quick" / "toy.yaml"
    toy.write_text(toy.read_text().replace("  log_every:", "  log_evry:"))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "'log_evry' was unexpected" in proc.stdout + proc.stderr


def test_default_target_is_the_whole_report(parsed: Any) -> None:
    assert parsed.default_target == "all"
    assert [str(f) for f in parsed.get_rule("all").input] == ["reports/report.md"]


def test_every_rule_that_runs_something_keeps_a_log(parsed: Any) -> None:
    silent = [r.name for r in parsed.rules if r.shellcmd and not r.log]
    assert not silent, f"rules without log: {silent}"


def test_cheap_rules_stay_local_and_heavy_rules_are_sized(parsed: Any) -> None:
    local = set(parsed._localrules)
    assert {"report", "toy_table", "toy_figure", "uci_table", "vae_table"} <= local
    unsized = {}
    for rule in parsed.rules:
        if rule.name in local or not rule.shellcmd:
            continue
        # download is network-bound: its time limit matters on a cluster, not its memory.
        needed = {"runtime"} if rule.name == "data_download" else {"mem_mb", "runtime"}
        missing = needed - set(rule.resources)
        if rule.name in TRAINING:
            missing |= {"gpu"} - set(rule.resources)
        if missing:
            unsized[rule.name] = sorted(missing)
    assert not unsized, f"cluster jobs without a size: {unsized}"


def test_training_rules_go_through_the_gpu_slot_wrapper(parsed: Any) -> None:
    for name in GPU_CAPABLE:
        assert parsed.get_rule(name).shellcmd.startswith("{PY_GPU} "), name
    assert parsed.globals["PY_GPU"] == "python -m bnaf gpu -- python -m bnaf"


@pytest.mark.parametrize("profile", ["local-gpu", "slurm", "slurm-local"])
def test_profiles_are_valid_for_a_dry_run(tmp_path: Path, profile: str) -> None:
    work = _copy(tmp_path)
    shutil.copytree(ROOT / "profiles", work / "profiles")
    cmd = [sys.executable, "-m", "snakemake", "--profile", f"profiles/{profile}", "-n"]
    cmd += ["reports/toy.md", "--config", "params=params/quick"]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "toy_table" in proc.stdout + proc.stderr
