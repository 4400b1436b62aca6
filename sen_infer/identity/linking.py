"""One identity across cameras: tracks linked into persons by their appearance embeddings.

A track is summarised by the normalised mean of its crops' embeddings. Two tracks may be the same
person when the cosine of their summaries reaches `threshold` and the constraints allow it:

- one person is not in two places at once: tracks that overlap in time are never linked, in one
  camera or across cameras (set `overlapping_views=True` for cameras that see the same ground);
- `max_gap` seconds at most between the end of one track and the start of the other (the person
  left one view and entered another within that time; None = no limit);
- tracks without timestamps are linked on appearance alone.

Linking is agglomerative, most similar pair first: two groups merge when their closest pair reaches
the threshold, no two of their tracks conflict, and the mean similarity between the groups also
reaches `threshold - 0.05` (a chain of look-alikes does not grow into one crowd). A person's id is the
smallest track id in it, so ids stay put as long as that track does.
"""

from __future__ import annotations

import numpy as np

from sen_infer.store.rows import TrackSummary

DEFAULT_THRESHOLD = 0.80
DEFAULT_MAX_GAP = 3600.0


def conflict(a: TrackSummary, b: TrackSummary, max_gap: float | None, overlapping_views: bool) -> bool:
    """True when `a` and `b` cannot be one person."""
    if a.start is None or b.start is None or a.end is None or b.end is None:
        return False
    overlap = a.start <= b.end and b.start <= a.end
    if overlap and (a.camera == b.camera or not overlapping_views):
        return True
    gap = max(a.start, b.start) - min(a.end, b.end)
    return max_gap is not None and gap > max_gap


def link_tracks(tracks: list[TrackSummary], threshold: float = DEFAULT_THRESHOLD,
                max_gap: float | None = DEFAULT_MAX_GAP, overlapping_views: bool = False) -> dict[int, int]:
    """track id -> person id for every track in `tracks` (an unlinked track is a person of its own)."""
    n = len(tracks)
    if n == 0:
        return {}
    emb = np.stack([t.embedding for t in tracks]).astype(np.float64)
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    sim = emb @ emb.T
    allowed = np.ones((n, n), bool)
    for i in range(n):
        for j in range(i + 1, n):
            if conflict(tracks[i], tracks[j], max_gap, overlapping_views):
                allowed[i, j] = allowed[j, i] = False
    group = list(range(n))  # member -> group id (a member's index)
    members = {i: [i] for i in range(n)}
    iu, ju = np.triu_indices(n, 1)
    order = np.argsort(-sim[iu, ju], kind="stable")
    for idx in order:
        i, j = int(iu[idx]), int(ju[idx])
        if sim[i, j] < threshold:
            break
        gi, gj = group[i], group[j]
        if gi == gj:
            continue
        a, b = members[gi], members[gj]
        block = np.ix_(a, b)
        if not allowed[block].all() or sim[block].mean() < threshold - 0.05:
            continue
        for m in b:
            group[m] = gi
        members[gi] = a + b
        del members[gj]
    return {tracks[m].track: min(tracks[k].track for k in ms) for ms in members.values() for m in ms}


def pairwise_scores(person: dict[int, int], truth: dict[int, int], possible=None) -> tuple[float, float, int, int]:
    """Link precision and recall over pairs of tracks with a known identity (`truth`: track -> pid):
    precision = share of linked pairs that are one identity, recall = share of same-identity pairs
    linked; pairs for which `possible(a, b)` is False are left out of both. Also returns the counts of
    linked and of true pairs."""
    known = sorted(t for t in truth if t in person)
    linked = true = both = 0
    for x in range(len(known)):
        for y in range(x + 1, len(known)):
            a, b = known[x], known[y]
            if possible is not None and not possible(a, b):
                continue
            same_pred, same_true = person[a] == person[b], truth[a] == truth[b]
            linked += same_pred
            true += same_true
            both += same_pred and same_true
    return (both / linked if linked else 1.0), (both / true if true else 1.0), linked, true
