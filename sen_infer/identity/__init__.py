"""Identities across cameras: tracks linked into persons by appearance, under time rules (`linking`)."""

from sen_infer.identity.linking import DEFAULT_MAX_GAP, DEFAULT_THRESHOLD, Appearance, TrackSummary, conflict, link_tracks

__all__ = ["link_tracks", "conflict", "TrackSummary", "Appearance", "DEFAULT_THRESHOLD", "DEFAULT_MAX_GAP"]
