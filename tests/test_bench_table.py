"""bench/all.py's table: ratios come from the pairs (run i of ours against run i of the
baseline), not from the two medians, and a benchmark that cannot run is listed, not dropped."""
import importlib.util
import sys
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("bench_all", Path(__file__).resolve().parents[1] / "bench" / "all.py")
bench_all = importlib.util.module_from_spec(spec)
sys.modules["bench_all"] = bench_all  # its dataclasses look their module up
spec.loader.exec_module(bench_all)


def test_ratio_spread_is_over_pairs_not_medians():
    # Times: medians 10 (ours) and 12 (baseline) would give 1.20; the pairs give 1.50, 1.20, 0.50.
    claim = {"claim": "x", "unit": "s", "better": "lower", "ours": [8.0, 10.0, 30.0], "base": [12.0, 12.0, 15.0]}
    assert bench_all.pair_ratios(claim) == [1.5, 1.2, 0.5]
    cells = bench_all.row_cells(claim)
    assert cells[3].startswith("**1.20x** [0.50-1.50]") and "n=3" in cells[3]
    rate = {"claim": "y", "unit": "tokens/s", "better": "higher", "ours": [110.0, 90.0], "base": [100.0, 100.0]}
    assert bench_all.pair_ratios(rate) == [1.1, 0.9]
    loss = {"claim": "z", "unit": "loss", "compare": "difference", "ours": [6.46, 6.50], "base": [6.47, 6.45]}
    assert bench_all.pair_ratios(loss) == pytest.approx([-0.01, 0.05])


def test_overhead_is_one_minus_the_ratio_and_unpaired_runs_are_refused():
    claim = {"claim": "run", "unit": "s", "better": "lower", "overhead": True, "ours": [40.0, 44.0, 50.0],
             "base": [36.0, 36.0, 36.0]}
    cell = bench_all.row_cells(claim)[3]
    assert "**0.82x** [0.72-0.90]" in cell and "overhead 18.2 % [10.0 to 28.0]" in cell
    with pytest.raises(ValueError):
        bench_all.pair_ratios({"claim": "bad", "ours": [1.0, 2.0], "base": [1.0]})


def test_missing_baseline_is_listed_as_skipped(tmp_path):
    b = bench_all.Bench("k", "Section", "what it claims", ["x.py"], None, [(tmp_path / "absent", "a baseline")])
    claims, why = bench_all.run_bench(b, 3, False, tmp_path)
    assert claims == [] and why == "needs a baseline"
    text = bench_all.table([], [("what it claims", why, "Section")])
    assert "| what it claims | - | - | skipped: needs a baseline | Section |" in text
