"""Retrieval metrics against hand-computed cases and a plain-loop reference."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sen_train.metrics import (MetricsError, bidirectional_metrics, format_table, paired_bootstrap, per_query_metrics,
                               retrieval_metrics)


def test_two_queries_by_hand():
    gallery = [1, 2, 1, 3]
    sim = np.array([[0.9, 0.8, 0.1, 0.5],   # pid 1: relevant at ranks 1 and 4
                    [0.7, 0.2, 0.6, 0.9]])  # pid 2: relevant at rank 4
    m = retrieval_metrics(sim, [1, 2], gallery)
    assert m["R1"] == pytest.approx(50.0)
    assert m["R5"] == pytest.approx(100.0)
    assert m["R10"] == pytest.approx(100.0)
    # AP: q0 (1/1 + 2/4)/2 = 0.75, q1 1/4 -> mean 0.5
    assert m["mAP"] == pytest.approx(50.0)
    # INP: q0 2/4, q1 1/4 -> mean 0.375
    assert m["mINP"] == pytest.approx(37.5)


def test_multi_relevant_deep_ranks():
    # 12 gallery items; the two relevant ones end up at ranks 6 and 11
    scores = np.linspace(1.0, 0.0, 12)
    pids = np.zeros(12, int)
    pids[[5, 10]] = 7
    m = retrieval_metrics(scores[None], [7], pids)
    assert (m["R1"], m["R5"], m["R10"]) == (0.0, 0.0, 100.0)
    assert m["mAP"] == pytest.approx(100 * (1 / 6 + 2 / 11) / 2)
    assert m["mINP"] == pytest.approx(100 * 2 / 11)


def test_perfect_ranking():
    sim = np.array([[0.9, 0.8, 0.1], [0.1, 0.2, 0.3]])
    m = retrieval_metrics(sim, [4, 5], [4, 4, 5])
    assert m == {"R1": 100.0, "R5": 100.0, "R10": 100.0, "mAP": 100.0, "mINP": 100.0}


def test_ties_broken_by_gallery_order():
    m = retrieval_metrics(np.array([[0.5, 0.5, 0.5]]), [2], [1, 2, 1])
    assert m["R1"] == 0.0 and m["mAP"] == pytest.approx(50.0)


def test_i2t_is_the_transposed_problem():
    sim = np.array([[0.9, 0.1], [0.3, 0.8], [0.2, 0.7]])  # 3 texts x 2 images
    both = bidirectional_metrics(sim, text_pids=[1, 1, 2], image_pids=[1, 2])
    assert both["t2i"]["R1"] == pytest.approx(100 * 2 / 3)  # text 1 prefers the wrong image
    # image 0 (pid 1): texts 0.9(1), 0.3(1), 0.2(2) -> AP 1; image 1 (pid 2): 0.8(1), 0.7(2) -> AP 1/2
    assert both["i2t"]["R1"] == pytest.approx(50.0)
    assert both["i2t"]["mAP"] == pytest.approx(75.0)


def test_no_relevant_item_is_an_error():
    with pytest.raises(MetricsError, match=r"query 1 \(pid 9\) has no relevant item"):
        retrieval_metrics(np.zeros((2, 2)), [1, 9], [1, 2])


def test_shape_mismatch_is_an_error():
    with pytest.raises(MetricsError, match="does not match"):
        retrieval_metrics(np.zeros((2, 3)), [1, 2], [1, 2])


def _reference(sim, qp, gp):
    """Plain per-query loop, written from the protocol text."""
    r = {1: [], 5: [], 10: []}
    aps, inps = [], []
    for i in range(len(qp)):
        order = sorted(range(len(gp)), key=lambda j: -sim[i, j])
        rel = [gp[j] == qp[i] for j in order]
        ranks = [k + 1 for k, x in enumerate(rel) if x]
        for k in r:
            r[k].append(ranks[0] <= k)
        aps.append(np.mean([(n + 1) / rank for n, rank in enumerate(ranks)]))
        inps.append(len(ranks) / ranks[-1])
    out = {f"R{k}": 100 * np.mean(v) for k, v in r.items()}
    out["mAP"], out["mINP"] = 100 * np.mean(aps), 100 * np.mean(inps)
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.integers(2, 30), st.integers(1, 5), st.integers(0, 2**31 - 1), st.integers(1, 7))
def test_matches_plain_loop(n_query, n_gallery, n_ids, seed, chunk):
    rng = np.random.default_rng(seed)
    gp = rng.integers(0, n_ids, n_gallery)
    qp = rng.choice(gp, n_query)  # every query has at least one relevant item
    sim = rng.standard_normal((n_query, n_gallery))  # continuous: no ties
    got = retrieval_metrics(sim, qp, gp, chunk=chunk)
    want = _reference(sim, qp, gp)
    assert got == pytest.approx(want)


def test_format_table_lists_all_metrics():
    text = format_table({"R1": 1.0, "R5": 2.0, "R10": 3.0, "mAP": 4.0, "mINP": 5.0})
    assert text.split() == ["R1", "R5", "R10", "mAP", "mINP", "1.00", "2.00", "3.00", "4.00", "5.00"]


def test_per_query_metrics_average_to_the_summary():
    rng = np.random.default_rng(3)
    sim = rng.normal(size=(40, 30))
    qp, gp = rng.integers(0, 6, 40), np.arange(30) % 6
    per = per_query_metrics(sim, qp, gp)
    summary = retrieval_metrics(sim, qp, gp)
    assert set(per) == set(summary)
    for k, v in per.items():
        assert v.shape == (40,) and v.mean() == pytest.approx(summary[k])
    assert set(np.unique(per["R1"])) <= {0.0, 100.0}


def test_paired_bootstrap_resamples_identities():
    groups = np.repeat(np.arange(30), 8)
    b = np.random.default_rng(0).uniform(0, 100, groups.size)
    assert paired_bootstrap(b, b, groups) == (0.0, 0.0, 0.0)
    assert paired_bootstrap(b + 5, b, groups) == pytest.approx((5.0, 5.0, 5.0))
    # one identity much better, the rest equal: the interval includes 0 because that identity may be left out
    a = b.copy()
    a[groups == 3] += 60
    mean, lo, hi = paired_bootstrap(a, b, groups)
    assert mean == pytest.approx(2.0) and lo == pytest.approx(0.0) and hi > mean
    # a steady gain on every identity is an interval away from 0
    mean, lo, hi = paired_bootstrap(b + np.random.default_rng(1).normal(4, 2, groups.size), b, groups)
    assert 0 < lo < mean < hi
    with pytest.raises(MetricsError, match="equal lengths"):
        paired_bootstrap(b[:5], b, groups)
