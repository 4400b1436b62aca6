"""What an ingest did: `IngestReport`, one type for images, videos, the pipeline and the Ray ingest."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class IngestReport:
    """What one ingest call did. Problems with single inputs land here instead of being raised, so one
    bad file never stops the others: read `unreadable`, `failed` and `incomplete` after every call.

    Attributes:
        added: rows stored.
        skipped_existing: rows, files or videos already stored (nothing added for them).
        unreadable: inputs skipped (missing, not a file, not an image or video, undecodable); `reasons`
            says why for each.
        tracks: video tracks stored (one row each).
        frames: video frames decoded.
        crops_embedded: crops (or pictures) run through the image encoder.
        seconds: wall time of the call.
        encoder_seconds: time inside image-encoder calls of video ingest; / `seconds` is its busy share.
        encoder_batches: image-encoder calls made for video crops.
        reasons: input -> why it is in `unreadable`.
        failed: input -> why its ingest failed on our side (a crop not writable, the file replaced while
            read); what it committed before stays, the rest was not stored.
        incomplete: video -> "decoded N of M frames" (stored, but a rerun looks at it again).
        notes: remarks that are not failures, e.g. frame times that disagree with the stated fps.
    """
    added: int = 0
    skipped_existing: int = 0
    unreadable: list[str] = field(default_factory=list)  # inputs skipped; `reasons` says why
    tracks: int = 0
    frames: int = 0
    crops_embedded: int = 0
    seconds: float = 0.0  # wall time
    encoder_seconds: float = 0.0  # time inside image-encoder calls (video ingest): its busy share = this / seconds
    encoder_batches: int = 0  # image-encoder calls made for video crops
    reasons: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # path -> why; nothing of it was committed
    incomplete: dict[str, str] = field(default_factory=dict)  # video -> "decoded N of M frames"
    notes: list[str] = field(default_factory=list)  # e.g. frame times that disagree with the stated fps

    def fail(self, item, reason: str) -> None:
        """Record an input whose ingest failed on our side (e.g. a crop could not be written).

        Args:
            item: the input (a path, shown with undecodable bytes as \\xNN). reason: one line.
        """
        self.failed[printable(item)] = reason

    def skip(self, item, reason: str) -> None:
        """Record an input that was not ingested, and why (one line).

        Args:
            item: the input (a path, shown with undecodable bytes as \\xNN). reason: one line.
        """
        name = printable(item)
        self.unreadable.append(name)
        self.reasons[name] = reason

    def merge(self, other: "IngestReport") -> None:
        """Add `other` into this report: counts and times summed, lists extended, dicts updated. The one
        merge every ingest path uses (per video, per pipeline, per Ray task).

        Args:
            other: the report to add; it is left as it was.
        """
        self.added += other.added
        self.skipped_existing += other.skipped_existing
        self.unreadable += other.unreadable
        self.reasons.update(other.reasons)
        self.failed.update(other.failed)
        self.incomplete.update(other.incomplete)
        self.notes += other.notes
        self.tracks += other.tracks
        self.frames += other.frames
        self.crops_embedded += other.crops_embedded
        self.seconds += other.seconds
        self.encoder_seconds += other.encoder_seconds
        self.encoder_batches += other.encoder_batches



def printable(item) -> str:
    """A path as text that can always be printed and stored, undecodable bytes shown as \\xNN."""
    return os.fsencode(str(item)).decode("utf-8", "backslashreplace")

