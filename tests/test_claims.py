"""Claims are judged by one rule (common/claims.py): beyond 3 s.e. and certified."""
import math

import pytest

from common.claims import compare_rows, markdown_rows, read_claims, verdict, write_claims


def row(gap, sem, certified=True):
    return {"amort_gap": gap, "amort_gap_sem": sem, "certified": str(certified)}


@pytest.mark.parametrize("d, se, certified, expected", [
    (1.0, 0.2, True, "held"), (1.0, 0.2, False, "not certified"), (0.5, 0.2, True, "not held"),
    (-1.0, 0.1, True, "not held"), (0.6, 0.2, True, "not held")])   # exactly 3 s.e. is not beyond
def test_verdict_needs_three_standard_errors_and_certificates(d, se, certified, expected):
    assert verdict(d, se, certified) == expected


def test_a_row_difference_uses_the_combined_standard_error_and_both_certificates(tmp_path):
    c = compare_rows("s", "a beats b", "col", row(5.0, 0.3), row(4.0, 0.4), "amort_gap", paper=2.0)
    assert c["difference"] == pytest.approx(1.0) and c["sem"] == pytest.approx(0.5)
    assert c["verdict"] == "not held"                       # 1.0 < 3 x 0.5
    c = compare_rows("s", "a beats b", "col", row(9.0, 0.3), row(4.0, 0.4, False), "amort_gap")
    assert c["verdict"] == "not certified" and c["paper"] is None
    write_claims(tmp_path, [c])
    assert read_claims(tmp_path) == [c]
    assert markdown_rows([c])[0][3:] == ["–", "+5.00 ± 0.50", "no", "**not certified**"]
    (tmp_path / "claims.json").write_text("{garbage")
    assert read_claims(tmp_path) == [] and math.isfinite(c["sem"])


def test_a_variant_without_a_standard_evaluation_keeps_no_stale_comparison(tmp_path):
    from exp52_testgap.compare import compare
    for name in ("claims.json", "table_vs_standard.md"):
        (tmp_path / name).write_text("from an earlier run")
    said = compare("large_encoder", [{"split": "train", "dataset": "mnist", "model": "ffg"}],
                   tmp_path / "variant_runs", tmp_path / "standard_runs", tmp_path)
    assert "no standard training-split evaluation" in said[0] and "make exp52" in said[0]
    assert not (tmp_path / "claims.json").exists()
    assert not (tmp_path / "table_vs_standard.md").exists()


@pytest.mark.parametrize("text, value", [("32e8771", "32e8771"), ("0e12345", "0e12345"),
                                         ("1234567", 1234567), ("-92.5", -92.5), ("1e-05", 1e-05),
                                         ("True", True), ("nan", "nan"), ("abc", "abc")])
def test_a_csv_cell_reads_back_as_what_was_written(text, value):
    from common.tables import _typed
    got = _typed(text)
    assert str(got) == text and (got == value or (text == "nan" and got != got))


def test_the_paired_standard_error_is_the_sample_sd_over_root_n():
    import torch
    from common.claims import mean_sem
    d = [1.0, 2.0, 3.0, 6.0]                     # mean 3, sample sd sqrt(14/3)
    assert mean_sem(d) == pytest.approx((3.0, math.sqrt(14 / 3) / 2))
    assert mean_sem(torch.tensor(d)) == pytest.approx(mean_sem(d))
