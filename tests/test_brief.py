"""The brief's own findings judged as claims (common/results/brief.py): each difference and s.e.
from
rows whose answer is known, the log p^ rule carried, and nothing judged where rows are missing."""
import math

import pytest

from common.results import brief
from common.results.claims import contrast


def gap_row(dataset, model, approx, amort, se=0.1, certified=True, split="test", paper=None):
    """A gaps.csv row; paper: the approximation gap under the paper's max rule (else none)."""
    row = {"dataset": dataset, "model": model, "split": split, "certified": certified,
           "approx_gap": approx, "approx_gap_sem": se, "amort_gap": amort, "amort_gap_sem": se,
           "total_gap": approx + amort, "total_gap_sem": se}
    if paper is not None:
        row.update(approx_gap_paper=paper, approx_gap_paper_sem=se,
                   total_gap_paper=paper + amort, total_gap_paper_sem=se)
    return row


def by_column(claims, text_part):
    return {c["column"]: c for c in claims if text_part in c["claim"]}


def test_contrast_sums_signed_terms_with_combined_se_and_judges_the_paper_rule_twin():
    a, b = gap_row("m", "flow", 2.0, 5.0, paper=2.5), gap_row("m", "cflow", 1.0, 4.0, paper=2.4)
    c = contrast("s", "t", "col", [(1, a, "approx_gap"), (-1, b, "approx_gap")], source="brief")
    assert c["difference"] == pytest.approx(1.0) and c["sem"] == pytest.approx(math.sqrt(0.02))
    assert c["verdict"] == "held" and c["source"] == "brief" and c["logpx_rule"] == "ais"
    assert c["paper_rule"]["difference"] == pytest.approx(0.1)
    assert c["paper_rule"]["verdict"] == "not held"            # the rule decides this one
    same = contrast("s", "t", "col", [(1, a, "approx_gap"), (-1, b, "approx_gap")], within=1.5)
    assert same["difference"] == pytest.approx(0.5)            # 1.5 - |1.0|
    uncertified = contrast("s", "t", "col", [(1, {**a, "certified": "False"}, "amort_gap"),
                                             (-1, b, "amort_gap")])
    assert uncertified["verdict"] == "not certified" and "paper_rule" not in uncertified


def test_exp52_brief_claims_from_known_rows():
    rows = [gap_row("mnist", "ffg", 1.0, 4.0), gap_row("mnist", "flow", 0.8, 3.9),
            gap_row("mnist", "cflow", 0.7, 3.0),
            gap_row("fashion", "ffg", 2.0, 6.0), gap_row("fashion", "flow", 1.0, 5.5),
            gap_row("fashion", "cflow", 1.0, 4.0)]
    spreads = {("fashion", "flow"): {"spread": 3.0, "spread_sem": 0.2},
               ("fashion", "cflow"): {"spread": 1.0, "spread_sem": 0.2}}
    claims = brief.exp52_claims(rows, spreads)
    assert all(c["source"] == "brief" for c in claims)
    cflow = by_column([c for c in claims if "amortization gap more than" in c["claim"]], "")
    assert cflow["MNIST"]["difference"] == pytest.approx(0.9)          # 3.9 - 3.0
    assert cflow["Fashion"]["difference"] == pytest.approx(1.5)
    # reduction on Fashion minus reduction on MNIST: (2.0 - 1.0) - (1.0 - 0.8) for the Flow
    fashion = [c for c in claims if "more on Fashion" in c["claim"] and "approximation" in c["claim"]]
    assert {c["column"]: round(c["difference"], 6) for c in fashion} == {"Flow": 0.8, "CFlow": 0.7}
    assert all(c["sem"] == pytest.approx(0.2) for c in fashion)       # four terms of 0.1
    dominates = by_column(claims, "dominates")
    assert dominates["Fashion CFlow"]["difference"] == pytest.approx(3.0)
    (stable,) = [c for c in claims if "stably" in c["claim"]]
    assert stable["difference"] == pytest.approx(2.0) and stable["verdict"] == "held"
    assert len(claims) == 6 + 4 + 4 + 1
    # a data set or family missing: its claims are absent, never judged on other rows
    only_mnist = brief.exp52_claims(rows[:2])
    assert [c["column"] for c in only_mnist] == ["MNIST Flow"]


def test_the_spread_of_epoch_changes_is_their_sd_over_the_second_half():
    values = [0, 0, 0, 0, 0, 1, 3, 4, 6, 7]     # second half 1, 3, 4, 6, 7: changes 2, 1, 2, 1
    s = brief.epoch_change_spread(values)
    assert s["spread"] == pytest.approx(math.sqrt(1 / 3))
    assert s["spread_sem"] == pytest.approx(s["spread"] / math.sqrt(6))
    assert brief.epoch_change_spread([1, 2, 3, 4]) is None    # too few changes for an s.e.


def test_exp53_and_exp55_brief_claims():
    rows = [{**gap_row("mnist", m, a, b), "encoder": "lin"} for m, a, b in
            (("ffg", 2.0, 9.0), ("flow", 1.5, 6.0), ("cflow", 1.4, 3.0))]
    claims = brief.exp53_claims(rows, {"lin": "linear", "missing": "one-hidden-layer"})
    assert [(c["column"], round(c["difference"], 6)) for c in claims] == \
        [("linear encoders", 0.1), ("linear encoders", 3.0)]
    final = {}
    for model, train, valid in (("ffg", (1.0, 2.0), (1.1, 3.0)),
                                ("large_encoder", (1.0, 1.0), (1.2, 5.0)),
                                ("large_decoder", (0.8, 2.0), (0.9, 2.6)),
                                ("flow", (0.5, 2.0), (1.5, 2.2))):
        for split, (approx, amort) in (("train", train), ("valid", valid)):
            final[(model, split)] = {**gap_row("mnist", model, approx, amort, split=split),
                                     "model": model}
    claims = brief.exp55_claims(final)
    same = by_column(claims, "same on training")
    assert same["ffg"]["difference"] == pytest.approx(0.4)            # 0.5 - 0.1
    assert same["flow"]["difference"] == pytest.approx(-0.5)          # 0.5 - 1.0: not held
    assert same["flow"]["verdict"] == "not held"
    (explodes,) = [c for c in claims if "explodes" in c["claim"]]
    assert explodes["difference"] == pytest.approx(4.0 - 1.0)
    (tradeoff,) = [c for c in claims if "trade-off" in c["claim"]]
    # the smallest Gaussian validation total gap: large_decoder's 3.5, against the flow's 3.7
    assert tradeoff["detail"] == "vs large_decoder"
    assert tradeoff["difference"] == pytest.approx(3.5 - 3.7)


def test_gradient_claims_from_last_quarter_means_and_spreads():
    def row(model, ratio, ratio_std, enc, n=4):
        return {"model": model, "last_quarter_epochs": n, "grad_ratio_normalised": ratio,
                "grad_ratio_normalised_std": ratio_std, "enc_grad_norm": enc,
                "enc_grad_norm_std": 2.0}
    rows = [row("ffg", 4.0, 0.4, 80), row("flow", 2.0, 0.1, 70), row("cflow", 1.5, 0.03, 70),
            row("large_encoder", 3.0, 0.3, 200), row("large_decoder", 20.0, 2.0, 60)]
    claims = {(c["claim"].split(" (")[0], c["column"]): c for c in brief.gradient_claims(rows)}
    big = claims[("large decoders unbalance the optimisation most", "large_decoder")]
    assert big["difference"] == pytest.approx(math.log(20) - math.log(4))
    assert big["sem"] == pytest.approx(math.sqrt((0.1 / 2) ** 2 + (0.1 / 2) ** 2))
    assert big["detail"] == "vs ffg"
    enc = claims[("large encoders put the most pressure on learning", "large_encoder")]
    assert enc["difference"] == pytest.approx(120) and enc["detail"] == "vs ffg"
    flow = claims[("the flows' gradients are more balanced than FFG's", "flow")]
    assert flow["difference"] == pytest.approx(math.log(4) - math.log(2))
    stable = claims[("the Contextual Flow is the most stable", "cflow")]
    assert stable["difference"] == pytest.approx(0.05 - 0.02) and stable["detail"] == "vs flow"
    assert stable["sem"] == pytest.approx(math.sqrt(0.05 ** 2 + 0.02 ** 2) / math.sqrt(6))
    assert brief.gradient_claims([row("ffg", 4.0, 0.0, 80, n=1)]) == []   # no s.e.


def test_refit_claims_split_the_curve_at_a_fifth_of_the_refit():
    curves = []
    for s, gains in (("A", (10.0, 5.0)), ("B", (8.0, 1.0))):
        for epoch in range(0, 11):
            value = -100 + gains[0] * min(epoch, 2) / 2 + gains[1] * max(0, epoch - 2) / 8
            curves.append({"noise": "50", "epoch": str(epoch), "set": s, "iwae": value,
                           "iwae_sem": 0.5})
    claims = brief.refit_claims(curves)
    first = by_column(claims, "first raises")
    assert first["noise 50, set A"]["difference"] == pytest.approx(10.0)
    assert first["noise 50, set B"]["detail"] == "epoch 0 to 2"
    (then,) = [c for c in claims if "mainly on A" in c["claim"]]
    assert then["difference"] == pytest.approx(5.0 - 1.0) and then["sem"] == pytest.approx(1.0)
    assert brief.refit_claims([r for r in curves if int(r["epoch"]) == 0]) == []
