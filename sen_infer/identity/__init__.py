"""Identities across cameras: tracks linked into persons by appearance, under time rules (`linking`)."""

from sen_infer.identity.linking import DEFAULT_MAX_GAP, DEFAULT_THRESHOLD, conflict, link_tracks
from sen_infer.store.rows import Appearance, TrackSummary

__all__ = ["link_tracks", "conflict", "TrackSummary", "Appearance", "DEFAULT_THRESHOLD", "DEFAULT_MAX_GAP"]
