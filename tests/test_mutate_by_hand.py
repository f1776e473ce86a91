"""The hand-made mutants (``tests/mutate_by_hand.py``, run by ``make mutate``) stay applicable:
a refactor that moves or rewrites a line one of them changes would silently retire it, so every
mutant's original text must still occur exactly once in its file, and its tests must exist."""

from __future__ import annotations

from pathlib import Path

import pytest
from mutate_by_hand import MUTANTS, ROOT


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_each_hand_made_mutant_still_applies(mutant: tuple[str, str, str, str, list[str]]):
    name, path, old, new, tests = mutant
    assert old != new
    source = (ROOT / path).read_text()
    assert source.count(old) == 1, (
        f"{name}: its original text is {source.count(old)} times in {path}"
    )
    assert source.replace(old, new) != source
    assert tests and all((ROOT / t).is_file() for t in tests)
    assert Path(path).suffix in (".py", ".yaml")


def test_the_names_are_distinct() -> None:
    names = [m[0] for m in MUTANTS]
    assert len(set(names)) == len(names) >= 20
