"""The store's side of identities across cameras: each track summarised for linking, the linked
persons stored, and a person's appearances read back."""

from __future__ import annotations

import json

import numpy as np

from sen_infer.store.rows import Appearance, TrackSummary
from sen_infer.store.schema import PERSONS, bump, has_table


def track_summaries(store) -> list:
    """Every track of a current (not superseded) source as a `identity.TrackSummary`: camera, first and
    last timestamp, normalised mean embedding."""
    store.refresh()
    with store.lock:
        view = store.columns.view()
    mask = store.columns.mask(view, None, None, None, False)
    pos = np.flatnonzero(view.track >= 0) if mask is None else np.flatnonzero(mask & (view.track >= 0))
    if not len(pos):
        return []
    tracks = view.track[pos]
    order = np.argsort(tracks, kind="stable")
    pos, tracks = pos[order], tracks[order]
    cuts = np.flatnonzero(np.diff(tracks)) + 1
    spans = {}
    with store.db("read track spans"):
        conn = store.conn()
        if has_table(conn, "track_spans"):
            spans = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT track, start, end FROM track_spans")}
    out = []
    for part in np.split(pos, cuts):
        track = int(view.track[part[0]])
        t = view.time[part]
        known = t[~np.isnan(t)]
        start, end = spans.get(track, (None, None))
        if start is None or end is None:  # images, or videos ingested before spans were kept
            start, end = (float(known.min()), float(known.max())) if len(known) else (None, None)
        with store.lock:
            mean = store.vectors(view.ids[part]).astype(np.float64).mean(axis=0)
        out.append(TrackSummary(track, store.columns.camera_name(int(view.camera[part[0]])), start, end,
                                (mean / max(np.linalg.norm(mean), 1e-12)).astype(np.float32)))
    return out


def set_persons(store, person_of: dict[int, int], params: dict) -> None:
    """Replace every track's linked person in one transaction (what `link_identities` computed with
    `params`); other open readers pick the new links up on their next query."""
    with store.writing("store identities") as conn:
        conn.execute(PERSONS)
        conn.execute("DELETE FROM persons")
        conn.executemany("INSERT INTO persons VALUES (?, ?)", sorted(person_of.items()))
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('link_params', ?)", (json.dumps(params),))
        bump(conn, "links")


def appearances(store, person: int) -> list:
    """The tracks linked to `person` (or the track `person` when it was never linked), in time order."""
    with store.db("read a timeline"):
        conn = store.conn()
        tracks = [person]
        if has_table(conn, "persons"):
            tracks = [t for (t,) in conn.execute("SELECT track FROM persons WHERE person=?", (person,))]
            if not tracks and conn.execute("SELECT 1 FROM persons WHERE track=?", (person,)).fetchone() is None:
                tracks = [person]  # a track never linked (ingested after the last link) is its own person
        spans = has_table(conn, "track_spans")
        span_cols = "s.start, s.end, s.first_frame, s.last_frame" if spans else "NULL, NULL, NULL, NULL"
        join = "LEFT JOIN track_spans s ON s.track = c.track" if spans else ""
        rows = conn.execute(
            f"SELECT c.track, c.camera, c.source, min(c.timestamp), max(c.timestamp), min(c.frame), max(c.frame), "
            f"group_concat(c.id), {span_cols} FROM crops c {join} "
            f"WHERE c.track IN ({','.join('?' * len(tracks))}) GROUP BY c.track", tracks).fetchall()
    out = [Appearance(person, r[0], r[1], r[2], r[8] if r[8] is not None else r[3],
                      r[9] if r[9] is not None else r[4], r[10] if r[10] is not None else r[5],
                      r[11] if r[11] is not None else r[6], tuple(sorted(int(k) for k in str(r[7]).split(","))))
           for r in rows]
    return sorted(out, key=lambda a: (a.start is None, a.start or 0.0, a.track))
