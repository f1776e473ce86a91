"""The floor plan holds: import layers (import-linter), no import circle anywhere in bnaf/, one
name per stage (CLI, module, rule, DVC stage, README's table), thin workflow files, DVC code
dependencies that cover every module a stage imports, and a schema generated from the params."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest
import yaml
from code_deps import closure

from bnaf.cli import STAGES, module_of, rule_of
from bnaf.schema import SCHEMA, render

ROOT = Path(__file__).resolve().parents[1]
#: DVC stage -> the CLI stages whose rules it runs
DVC_STAGES = {
    "inventory": ["data inventory"],
    "data": ["data download", "data prepare"],
    "toy": ["toy train", "toy table", "toy figure"],
    "uci": ["uci train", "uci select", "uci table", "gpu"],
    "vae": ["vae train", "vae count", "vae table", "gpu"],
    "normalisation": ["normalisation", "samples"],
    "report": ["report"],
}


def test_import_linter_contracts_hold() -> None:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    done = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout


def test_no_import_circle_anywhere_in_bnaf() -> None:
    graph = grimp.build_graph("bnaf")
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                cycles.append(" -> ".join([module, *back]))
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_is_a_module_with_its_cli(stage: str) -> None:
    module = importlib.import_module(module_of(stage))
    assert callable(module.add_arguments) and callable(module.run)
    assert module.__doc__ and f"python -m bnaf {stage}`" in " ".join(module.__doc__.split())


def _rules() -> dict[str, list[str]]:
    """rule name -> its lines, from every rule file."""
    out: dict[str, list[str]] = {}
    for path in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        name = None
        for line in path.read_text().splitlines():
            m = re.match(r"(?:rule|checkpoint) (\w+):", line)
            if m:
                name = m.group(1)
                out[name] = []
            elif name and line and not line.startswith((" ", "#")):
                name = None
            if name:
                out[name].append(line)
    return out


def test_every_rule_is_named_after_its_stage_and_short() -> None:
    rules = _rules()
    # tools outside the pipeline: the GPU wrapper, the schema writer, the count calculator;
    # and DVC's own step, which re-runs its data stage when data is supplied later
    no_rule = ("gpu", "schema", "uci count", "data inventory")
    stages_with_rules = [s for s in STAGES if s not in no_rule]
    for stage in stages_with_rules:
        assert rule_of(stage) in rules, f"no rule {rule_of(stage)} for stage {stage!r}"
        shell = " ".join(rules[rule_of(stage)])
        assert f"}} {stage} " in shell, f"rule {rule_of(stage)} does not run {stage!r}"
    extra = set(rules) - {rule_of(s) for s in stages_with_rules} - {"all", "data"}
    assert not extra, f"rules that are no stage: {extra}"
    sizes = {name: len("\n".join(lines).rstrip().splitlines()) for name, lines in rules.items()}
    long = {name: n for name, n in sizes.items() if n > 20}
    assert not long, f"rules over 20 lines: {long}"


def test_snakefile_is_thin() -> None:
    lines = (ROOT / "Snakefile").read_text().splitlines()
    assert len(lines) <= 25
    assert not any(line.startswith(("def ", "rule ")) for line in lines if "rule all" not in line)


def test_dvc_stages_are_the_parts_and_depend_on_all_their_code() -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(stages) == set(DVC_STAGES)
    for name, cli_stages in DVC_STAGES.items():
        deps = [str(d) for d in stages[name]["deps"]]
        needed = closure("bnaf.cli", *(module_of(s) for s in cli_stages))
        missing = [f for f in needed if not any(f == d or f.startswith(d + "/") for d in deps)]
        fix = "python tests/code_deps.py rewrites them"
        assert not missing, f"dvc.yaml stage {name} misses code it imports: {missing} ({fix})"
        for s in cli_stages:
            if s == "data inventory":  # no rule: the stage runs the command itself
                assert stages[name]["cmd"].startswith(f"python -m bnaf {s} ")
                assert stages[name]["always_changed"] is True
            elif name == "toy":  # self-contained part: every rule its targets need is its own
                assert "--forceall" in stages[name]["cmd"]
                assert set(stages[name]["cmd"].split()) >= {
                    "reports/toy.md",
                    "reports/figure2.png",
                }
            elif s != "gpu":
                assert "--forcerun" in stages[name]["cmd"] and rule_of(s) in stages[name]["cmd"]


def test_readme_stage_table_lists_every_stage() -> None:
    readme = (ROOT / "README.md").read_text()
    for stage in STAGES:
        assert f"`python -m bnaf {stage}`" in readme, stage
        assert f"`{module_of(stage).replace('.', '/')}.py`" in readme, stage


def test_the_snakemake_schema_is_generated_from_the_params_dataclasses() -> None:
    assert (ROOT / SCHEMA).read_text() == render(), "run: python -m bnaf schema"


def test_modules_stay_small() -> None:
    # Long modules were split where a natural seam exists; these are single algorithms.
    allowed = {
        "bnaf/flows/inverse.py": 360,
        "bnaf/flows/layers.py": 340,
        "bnaf/report/normalisation.py": 340,
    }
    for path in sorted((ROOT / "bnaf").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        n = len(path.read_text().splitlines())
        assert n <= allowed.get(rel, 320), f"{rel}: {n} lines"
