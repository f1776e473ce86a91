"""``history.csv``: the rows of a run's history written as CSV and read back exactly, and the
progress helper's two modes (a bar on a terminal, exactly the loop's own lines elsewhere)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest

from bnaf.core.errors import BnafError
from bnaf.core.history import read_history, write_history
from bnaf.core.progress import Progress

# Rows as the UCI trainer writes them: a None validation figure (non-finite), flags, and
# floats that need all 17 significant digits.
UCI_ROWS = [
    {"epoch": 1, "train_nll": 1.2345678901234567, "validation_ll": -1.1, "lr": 0.01,
     "samples_per_s": 1e5, "seconds": 0.1, "best": True, "decay": False},
    {"epoch": 2, "train_nll": 0.1 + 0.2, "validation_ll": None, "lr": 0.005,
     "samples_per_s": 2e5, "seconds": 0.2, "best": False, "decay": True},
]  # fmt: skip


def test_rows_round_trip_with_a_header_and_stable_column_order(tmp_path: Path) -> None:
    path = tmp_path / "run" / "history.csv"
    write_history(path, UCI_ROWS)
    assert [p.name for p in path.parent.iterdir()] == ["history.csv"]  # no temporary left
    lines = path.read_text().splitlines()
    assert lines[0] == "epoch,train_nll,validation_ll,lr,samples_per_s,seconds,best,decay"
    assert len(lines) == 1 + len(UCI_ROWS)
    back = read_history(path)
    assert list(back) == list(UCI_ROWS[0])
    for i, row in enumerate(UCI_ROWS):
        for key, value in row.items():
            got = back[key][i]
            if value is None:
                assert math.isnan(got)
            else:
                assert got == float(value), (key, i)  # exact: no digit lost
    # Any CSV reader sees the same table (pandas, DVC).
    table = list(csv.DictReader(io.StringIO(path.read_text())))
    assert table[1]["validation_ll"] == "" and table[0]["best"] == "True"


def test_a_key_missing_from_a_row_is_an_empty_cell_and_new_keys_come_last(
    tmp_path: Path,
) -> None:
    path = tmp_path / "history.csv"
    write_history(path, [{"iteration": 1, "loss": 2.0}, {"iteration": 2, "lr": 0.1}])
    assert path.read_text() == "iteration,loss,lr\n1,2.0,\n2,,0.1\n"


@pytest.mark.parametrize(
    "text,what",
    [
        ("", "no header"),
        ("epoch,loss\n1,2,3\n", "line 2 has 3 cells"),
        ("epoch,loss\n1,abc\n", "column loss"),
        ("epoch,epoch\n1,2\n", "appears twice"),
    ],
)
def test_a_malformed_history_is_one_error_naming_the_file(
    tmp_path: Path, text: str, what: str
) -> None:
    path = tmp_path / "history.csv"
    path.write_text(text)
    with pytest.raises(BnafError, match=what) as err:
        read_history(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(BnafError, match="no such file"):
        read_history(tmp_path / "absent.csv")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_the_log_holds_exactly_the_loops_lines() -> None:
    stream, lines = io.StringIO(), []
    with Progress(5, "run", "epoch", log=lines.append, stream=stream) as progress:
        for epoch in range(1, 4):
            progress.advance()
            progress.log(f"epoch {epoch}")
    assert lines == ["epoch 1", "epoch 2", "epoch 3"]
    assert stream.getvalue() == ""


def test_on_a_terminal_a_bar_shows_the_time_left_and_the_lines_still_print() -> None:
    stream, lines = _Terminal(), []
    with Progress(10, "power L1_H4 seed 0", "epoch", initial=2, log=lines.append,
                  stream=stream) as progress:  # fmt: skip
        progress.bar.mininterval = 0  # draw at every step
        for epoch in range(3, 6):
            progress.advance()
            progress.log(f"epoch {epoch}")
    assert lines == ["epoch 3", "epoch 4", "epoch 5"]
    drawn = stream.getvalue()
    assert "power L1_H4 seed 0" in drawn and "5/10" in drawn
    assert "<" in drawn  # tqdm's [elapsed<remaining]: the time left
