"""What a stage reads from another stage's JSON is checked where it is read
(``bnaf.core.shapes``): the first fault is one line naming the file and the key; every writer's
real output passes its reader."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bnaf.core.errors import BnafError
from bnaf.core.io import read_json
from bnaf.core.shapes import MapOf, Maybe, check
from bnaf.data.fetch import DataUnavailable, write_status
from bnaf.data.registry import get
from bnaf.data.status import read_status

SHAPE = {
    "name": str,
    "n": int,
    "x": float,
    "flag": bool,
    "unit": frozenset({"nats", "bits/dim"}),
    "sizes": [int],
    "by": MapOf({"v": float}),
    "maybe": Maybe({"w": int}),
    "extra?": str,
    "nested": {"deep": {"leaf": str}},
}
GOOD = {
    "name": "a",
    "n": 3,
    "x": 0.5,
    "flag": False,
    "unit": "nats",
    "sizes": [1, 2],
    "by": {"p": {"v": 1}, "q": {"v": -2.5}},
    "maybe": None,
    "nested": {"deep": {"leaf": "z"}},
    "unread": [object.__name__],  # keys the reader does not name are the writer's business
}


def test_a_file_of_the_shape_is_returned_as_it_is() -> None:
    assert check(GOOD, SHAPE, "f.json") is GOOD
    full = GOOD | {"extra": "here", "maybe": {"w": 1}, "n": 2**40, "x": 7}
    assert check(full, SHAPE, "f.json") is full


@pytest.mark.parametrize(
    "change, message",
    [
        ({"name": None}, "'name' is null, expected a string"),
        ({"n": True}, "'n' is true, expected an integer"),  # a bool is no count
        ({"n": 2.0}, "'n' is 2.0, expected an integer"),
        ({"x": "0.5"}, "'x' is '0.5', expected a finite number"),
        ({"x": False}, "'x' is false, expected a finite number"),
        ({"x": math.nan}, "'x' is nan, expected a finite number"),
        ({"x": -math.inf}, "'x' is -inf, expected a finite number"),
        ({"flag": 0}, "'flag' is 0, expected true or false"),
        ({"unit": "NATS"}, "'unit' is 'NATS', expected one of 'bits/dim', 'nats'"),
        ({"unit": ["nats"]}, "'unit' is a list, expected one of"),
        ({"sizes": {"a": 1}}, "'sizes' is an object, expected a list"),
        ({"sizes": [1, 2, "3"]}, "'sizes[2]' is '3', expected an integer"),
        ({"by": []}, "'by' is a list, expected an object"),
        ({"by": {"p": {"v": 1}, "q": {}}}, "missing key 'by.q.v'"),
        ({"by": {"q": {"v": None}}}, "'by.q.v' is null, expected a finite number"),
        ({"maybe": {"w": "1"}}, "'maybe.w' is '1', expected an integer"),
        ({"extra": 5}, "'extra' is 5, expected a string"),  # optional, but checked when there
        ({"nested": {"deep": 1}}, "'nested.deep' is 1, expected an object"),
        ({"nested": {"deep": {}}}, "missing key 'nested.deep.leaf'"),
    ],
)
def test_the_first_fault_is_one_line_naming_the_file_and_the_key(change, message) -> None:
    bad = GOOD | change
    with pytest.raises(BnafError) as err:
        check(bad, SHAPE, "dir/f.json")
    text = str(err.value)
    assert text.startswith(f"dir/f.json: {message}") and "\n" not in text, text
    if not message.endswith("one of"):
        assert text == f"dir/f.json: {message}"


@pytest.mark.parametrize("key", ["name", "n", "by", "nested"])
def test_a_missing_key_is_named(key: str) -> None:
    bad = {k: v for k, v in GOOD.items() if k != key}
    with pytest.raises(BnafError, match=rf"^f\.json: missing key '{key}'$"):
        check(bad, SHAPE, "f.json")


@pytest.mark.parametrize("data", [[], "text", 3, None])
def test_a_file_that_is_no_object_is_named(data) -> None:
    with pytest.raises(BnafError, match=r"^f\.json: the file is .*, expected an object$"):
        check(data, SHAPE, "f.json")


def test_long_values_are_shortened_in_the_line() -> None:
    with pytest.raises(BnafError) as err:
        check({"a": "y" * 100}, {"a": int}, "f.json")
    assert str(err.value) == "f.json: 'a' is '" + "y" * 36 + "..., expected an integer"
    # up to 40 characters are shown whole (a 38-letter string and its quotes), one more is cut
    for n, shown in ((38, "'" + "y" * 38 + "'"), (39, "'" + "y" * 36 + "...")):
        with pytest.raises(BnafError) as err:
            check({"a": "y" * n}, {"a": int}, "f.json")
        assert str(err.value) == f"f.json: 'a' is {shown}, expected an integer"


def test_read_json_checks_the_shape_of_what_it_read(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"a": {"b": [1, 2.5]}}))
    assert read_json(path, shape={"a": {"b": [float]}}) == {"a": {"b": [1, 2.5]}}
    with pytest.raises(BnafError, match=rf"^{path}: 'a\.b\[1\]' is 2\.5, expected an integer$"):
        read_json(path, shape={"a": {"b": [int]}})


@pytest.mark.parametrize("available", [True, False])
def test_a_written_status_reads_back(tmp_path: Path, available: bool) -> None:
    """Round trip: what ``download`` writes (available or not) passes what the later stages
    read; a status of another dataset is refused by name."""
    spec = get("power")
    path = tmp_path / "power.status.json"
    if available:
        from bnaf.data.fetch import Fetched

        fetched = Fetched("power", {"power/data.npy": tmp_path / "data.npy"},
                          {"power/data.npy": "raw_dir"}, {"power/data.npy": "md5:00"},
                          {"power/data.npy": "official"})  # fmt: skip
        written = write_status(path, spec, fetched)
    else:
        written = write_status(path, spec, error=DataUnavailable("offline", "put it in X", []))
    assert read_status(path, "power") == json.loads(json.dumps(written))
    with pytest.raises(BnafError, match="the status of 'power', not of 'gas'$"):
        read_status(path, "gas")


def test_a_written_selection_reads_back(tmp_path: Path) -> None:
    """Round trip: ``select`` on runs as ``train`` writes them, then Table 1's reader."""
    from test_selection_document import RUNS, _write

    from bnaf.core.io import atomic_write_json
    from bnaf.uci.results import read_metrics, read_selection
    from bnaf.uci.select import select

    files = [_write(tmp_path / r["config"] / f"seed{r['seed']}", r) for r in RUNS]
    doc = select([read_metrics(f) for f in files], "power", 1)
    atomic_write_json(tmp_path / "selection.json", doc)
    assert read_selection(tmp_path / "selection.json") == json.loads(json.dumps(doc))
