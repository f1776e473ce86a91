"""``params/paper/*.yaml`` holds the paper's stated hyperparameters (Sections 5.1-5.4).

Each family's ``published`` module records what the paper states (value, section, the paper's
words) and, where the authors' code differs or the paper is silent, the code line and the value
used. The paper budget must agree with that record; every departure from a stated value must
name the code line behind it; and every quoted phrase must occur in the paper's text (checked
when the text is at hand, in the shared folder beside the checkout).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from bnaf.toy.params import load_toy
from bnaf.toy.published import PAPER_HYPERPARAMETERS as TOY
from bnaf.uci.params import load_uci
from bnaf.uci.published import PAPER_HYPERPARAMETERS as UCI
from bnaf.vae.params import load_vae
from bnaf.vae.published import PAPER_HYPERPARAMETERS as VAE

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "params" / "paper"
FAMILIES = {
    "uci": (UCI, lambda: load_uci(PAPER / "uci.yaml")),
    "vae": (VAE, lambda: load_vae(PAPER / "vae.yaml")),
    "toy": (TOY, lambda: load_toy(PAPER / "toy.yaml")),
}
ENTRIES = [(family, e) for family, (entries, _) in FAMILIES.items() for e in entries]
FIELDS = {"key", "paper", "section", "quote", "code", "used", "count"}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _lookup(params: Any, key: str) -> Any:
    value = params
    for part in key.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return _plain(value)


def _expected(entry: dict[str, Any]) -> Any:
    return entry["used"] if "used" in entry else entry["paper"]


@pytest.fixture(scope="module")
def loaded() -> dict[str, Any]:
    return {family: load() for family, (_, load) in FAMILIES.items()}


@pytest.mark.parametrize("family, entry", ENTRIES, ids=[f"{f}:{e['key']}" for f, e in ENTRIES])
def test_paper_budget_holds_the_recorded_value(family, entry, loaded) -> None:
    got = _lookup(loaded[family], entry["key"])
    if entry.get("count"):
        got = len(got)
    want = _expected(entry)
    assert (
        got == want
        and type(got) is type(want)
        or (isinstance(want, float) and got == pytest.approx(want, rel=1e-12))
    ), f"params/paper/{family}.yaml {entry['key']}: {got!r}, the record says {want!r}"


@pytest.mark.parametrize("family, entry", ENTRIES, ids=[f"{f}:{e['key']}" for f, e in ENTRIES])
def test_every_entry_is_complete_and_departures_name_the_code(family, entry) -> None:
    assert set(entry) <= FIELDS, set(entry) - FIELDS
    assert {"key", "paper", "section"} <= set(entry)
    if entry["paper"] is not None:
        assert entry.get("quote"), "a stated value quotes the paper"
    if _expected(entry) != entry["paper"]:
        assert entry.get("code"), "a value other than the paper's names the code line behind it"


def test_the_record_covers_the_central_training_settings() -> None:
    keys = {(f, e["key"]) for f, e in ENTRIES}
    for needed in [
        ("uci", "train.polyak"), ("uci", "train.lr"), ("uci", "train.batch_size"),
        ("uci", "train.patience"), ("uci", "train.lr_decay"), ("uci", "flow.flows"),
        ("uci", "train.early_stopping"), ("uci", "train.max_epochs"),
        ("toy", "density.bnaf.optimiser.iterations"), ("vae", "lr"), ("vae", "latent"),
    ]:  # fmt: skip
        assert needed in keys, needed


def _paper_text() -> str | None:
    for folder in (ROOT.parent / "shared", ROOT.parent.parent / "shared"):
        path = folder / "paper" / "bnaf-uai2019.txt"
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            text = re.sub(r"-\n(?=[a-z])", "", text)  # words hyphenated across lines
            return re.sub(r"\s+", " ", text)
    return None


def test_every_quote_is_in_the_paper() -> None:
    text = _paper_text()
    if text is None:
        pytest.skip("the paper's text (shared/paper/bnaf-uai2019.txt) is not beside the checkout")
    missing = [(f, e["key"]) for f, e in ENTRIES if e.get("quote") and e["quote"] not in text]
    assert not missing


def test_a_changed_value_is_caught(loaded, tmp_path: Path) -> None:
    # the check itself: the paper's polyak 0.998 replaced by 0.98 must disagree with the record
    text = (PAPER / "uci.yaml").read_text()
    assert text.count("polyak: 0.998") == 1
    (tmp_path / "uci.yaml").write_text(text.replace("polyak: 0.998", "polyak: 0.98"))
    entry = next(e for e in UCI if e["key"] == "train.polyak")
    assert _lookup(load_uci(tmp_path / "uci.yaml"), entry["key"]) != _expected(entry)
