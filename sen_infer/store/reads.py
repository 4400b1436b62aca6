"""Reads served from the in-memory columns alone (no table scan): a row's context, each camera's
summary, and the keys of a camera."""

from __future__ import annotations

import numpy as np

from sen_infer.errors import UnknownKey


def context(store, key: int, nearby: int = 8) -> tuple[list[int], list[int]]:
    """What surrounds row `key`: the keys of its track (time order) and of up to `nearby` other rows of
    its camera nearest to it in time. From the in-memory columns, so it costs no table scan.
    UnknownKey for a key not in the gallery."""
    store.refresh()
    with store.lock:
        view = store.columns.view()
    n = len(view.ids)
    i = int(np.searchsorted(view.ids, key))
    if i >= n or view.ids[i] != key:
        raise UnknownKey(f"no row with key {key} in the gallery")
    track = int(view.track[i])
    same_track = np.flatnonzero(view.track == track) if track >= 0 else np.array([i])
    same_track = same_track[np.lexsort((view.ids[same_track], np.nan_to_num(view.time[same_track], nan=np.inf)))]
    others = np.flatnonzero((view.camera == view.camera[i]) & (view.track != track if track >= 0 else True))
    others = others[others != i]
    t = view.time[i]
    gap = np.abs(view.time[others] - t) if not np.isnan(t) else np.abs(others - i).astype(np.float64)
    gap = np.nan_to_num(gap, nan=np.inf)
    pick = others[np.lexsort((view.ids[others], gap))[:nearby]]
    pick = pick[np.lexsort((view.ids[pick], np.nan_to_num(view.time[pick], nan=np.inf)))]
    return [int(k) for k in view.ids[same_track]], [int(k) for k in view.ids[pick]]


def camera_summary(store) -> list[dict]:
    """Each camera (None for rows without one) with its row count and first and last time, by name."""
    store.refresh()
    with store.lock:
        view = store.columns.view()
    out = []
    if len(view.ids):
        order = np.argsort(view.camera, kind="stable")
        codes = view.camera[order]
        cuts = np.flatnonzero(np.diff(codes)) + 1
        for part in np.split(order, cuts):
            t = view.time[part]
            t = t[~np.isnan(t)]
            out.append({"name": store.columns.camera_name(int(view.camera[part[0]])), "rows": int(len(part)),
                        "first": float(t.min()) if len(t) else None, "last": float(t.max()) if len(t) else None})
    return sorted(out, key=lambda c: (c["name"] is None, c["name"] or ""))


def keys(store, camera: str | None = None, superseded: bool = True) -> list[int]:
    """Every row's key (of one camera when given), in insertion order."""
    store.refresh()
    with store.lock:
        view = store.columns.view()
    mask = store.columns.mask(view, camera, None, None, superseded)
    return [int(k) for k in (view.ids if mask is None else view.ids[mask])]
