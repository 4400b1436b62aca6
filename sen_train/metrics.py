"""The field's retrieval metrics: R@1/5/10, mAP and mINP, in percent.

Protocol (docs/design.md, "Evaluation protocol"): rank the gallery by similarity for every query; a gallery item is relevant
when its identity equals the query's. AP averages precision over *all* relevant items;
INP = (number relevant) / (1-based rank of the last relevant). Ties are broken by gallery order
(a stable sort), so results are deterministic.
"""

from __future__ import annotations

import numpy as np

TOP_K = (1, 5, 10)
METRIC_NAMES = ("R1", "R5", "R10", "mAP", "mINP")


class MetricsError(ValueError):
    """Inputs that do not define a retrieval evaluation."""


def per_query_metrics(similarity, query_pids, gallery_pids, chunk: int = 1024) -> dict[str, np.ndarray]:
    """Per query (in percent): hit@1/5/10 as R1/R5/R10 (0 or 100), AP as mAP and INP as mINP.

    Their means are `retrieval_metrics`; kept apart so that paired bootstraps can resample queries.
    Queries are processed in chunks of `chunk` rows so that memory stays O(chunk x G).
    """
    sim = np.asarray(similarity)
    qp = np.asarray(query_pids)
    gp = np.asarray(gallery_pids)
    if sim.ndim != 2:
        raise MetricsError(f"similarity must be 2-D [queries, gallery], got shape {sim.shape}")
    if sim.shape != (len(qp), len(gp)):
        raise MetricsError(
            f"similarity shape {sim.shape} does not match {len(qp)} query pids x {len(gp)} gallery pids"
        )
    if sim.shape[0] == 0 or sim.shape[1] == 0:
        raise MetricsError("empty query set or gallery")

    parts: dict[str, list[np.ndarray]] = {k: [] for k in METRIC_NAMES}
    for start in range(0, len(qp), chunk):
        rows = sim[start : start + chunk]
        order = np.argsort(-rows, axis=1, kind="stable")
        matches = gp[order] == qp[start : start + chunk, None]  # [q, G] bool, in rank order
        n_rel = matches.sum(axis=1)
        if (n_rel == 0).any():
            bad = start + int(np.flatnonzero(n_rel == 0)[0])
            raise MetricsError(f"query {bad} (pid {qp[bad]}) has no relevant item in the gallery")
        for k in TOP_K:
            parts[f"R{k}"].append(100.0 * matches[:, :k].any(axis=1))
        cum = np.cumsum(matches, axis=1)
        ranks = np.arange(1, matches.shape[1] + 1)
        precision_at_hits = (cum / ranks) * matches
        parts["mAP"].append(100.0 * precision_at_hits.sum(axis=1) / n_rel)
        last = matches.shape[1] - np.argmax(matches[:, ::-1], axis=1)  # 1-based rank of last relevant
        parts["mINP"].append(100.0 * n_rel / last)
    return {k: np.concatenate(v) for k, v in parts.items()}


def retrieval_metrics(similarity, query_pids, gallery_pids, chunk: int = 1024) -> dict[str, float]:
    """Metrics for `similarity` [Q, G] (rows are queries) with identities per query and gallery item."""
    return {k: float(v.mean()) for k, v in per_query_metrics(similarity, query_pids, gallery_pids, chunk).items()}


def paired_bootstrap(a: np.ndarray, b: np.ndarray, groups, n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of `a - b` and its 95% interval, resampling whole `groups` (query identities) with replacement.

    `a` and `b` are one per-query metric of two models on the same queries. Captions of one person
    are correlated, so identities, not captions, are the unit that is resampled."""
    a, b, groups = np.asarray(a, float), np.asarray(b, float), np.asarray(groups)
    if a.shape != b.shape or a.shape != groups.shape:
        raise MetricsError(f"paired bootstrap needs equal lengths, got {a.shape}, {b.shape}, {groups.shape}")
    ids, inverse = np.unique(groups, return_inverse=True)
    diff_sum = np.bincount(inverse, weights=a - b, minlength=len(ids))
    count = np.bincount(inverse, minlength=len(ids))
    picks = np.random.default_rng(seed).integers(0, len(ids), size=(n, len(ids)))
    boot = diff_sum[picks].sum(axis=1) / count[picks].sum(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float((a - b).mean()), float(lo), float(hi)


def bidirectional_metrics(similarity, text_pids, image_pids) -> dict[str, dict[str, float]]:
    """Text-to-image (the field's headline) and image-to-text, from one [texts, images] matrix."""
    sim = np.asarray(similarity)
    return {
        "t2i": retrieval_metrics(sim, text_pids, image_pids),
        "i2t": retrieval_metrics(sim.T, image_pids, text_pids),
    }


def format_table(metrics: dict[str, float]) -> str:
    """One-line-per-metric table for terminals."""
    keys = [f"R{k}" for k in TOP_K] + ["mAP", "mINP"]
    head = " ".join(f"{k:>7}" for k in keys)
    vals = " ".join(f"{metrics[k]:7.2f}" for k in keys)
    return f"{head}\n{vals}"
