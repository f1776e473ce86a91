"""The size claims of Section 5.4 (``python -m bnaf vae count``), against hand-derived formulas."""

from __future__ import annotations

import json

import pytest

from bnaf.cli import main

ENC, D = 256, 64  # encoder output units, latent size


def bnaf_formula(flows: int = 8, k: int = 4) -> tuple[int, int]:
    per_flow_values = (2 * k * D + D) + (2 * D + k * D)  # (b, v1 in R^n; v2 in R^m) x 2 layers
    values = flows * per_flow_values
    lower_blocks = D * (D + 1) // 2  # blocks on and below the diagonal
    weights = flows * (2 * k * lower_blocks + k * D + D) + flows  # W, log-scale; a gate per flow
    return values, (ENC + 1) * values + weights


def test_count_cli_matches_formulas_and_paper(tmp_path, capsys):
    assert main(["vae", "count", "--out", str(tmp_path / "c.json")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == json.loads((tmp_path / "c.json").read_text())
    m = out["models"]
    values, trainable = bnaf_formula()
    assert m["bnaf"]["values_per_datapoint"] == values == 7680
    assert m["bnaf"]["trainable_paper"] == trainable
    orth = 16 * (32 * 32 + 32 + 32 + D * 32 + 32)  # R (full), 2 diagonals, Q, b
    house = 16 * (D * D + D + D + D * 8 + D)
    assert m["snf_orthogonal"]["values_per_datapoint"] == orth
    assert m["snf_householder"]["values_per_datapoint"] == house
    assert m["snf_orthogonal"]["trainable_paper"] == (ENC + 1) * orth
    iaf = (ENC + 1) * 1280 + 16 * ((D + 1) * 1280 + 1281 * 1280 + 2 * 1281 * D)
    assert m["iaf"]["trainable_paper"] == iaf
    # the paper's rounded figures: 7.7k, 50.7k, 76.8k values per datapoint
    for name, paper in (("bnaf", 7.7), ("snf_orthogonal", 50.7), ("snf_householder", 76.8)):
        assert round(m[name]["values_per_datapoint"] / 1000, 1) == paper
    for name, paper in (("snf_orthogonal", 6.16), ("snf_householder", 9.35), ("iaf", 14.45)):
        assert out["trainable_ratio_paper"][name] == pytest.approx(paper, rel=3e-3)
    # documented difference: the paper's 6.64x values ratio vs the exact 6.60x
    assert out["values_ratio"]["snf_orthogonal"] == pytest.approx(6.6)
    assert any("6.64" in d["paper"] for d in out["differences"])
