"""Ingest: images and videos into a store. `report` (what an ingest did), `inputs` (which files, what
identifies their content), `images`, `video` (plan, the one chunk loop, commit) and `pipeline` (many
videos at once, decoding and embedding overlapped)."""

from sen_infer.ingest.report import IngestReport

__all__ = ["IngestReport"]
