"""`Gallery`: one gallery folder — a `VectorStore` (rows, embeddings, index) filled by the ingest steps
(`sen_infer.ingest`) with the model of an engine dir. It implements `GalleryLike`.

A source is known by its content, not its path alone (path + size + mtime + a fingerprint of early
bytes): a recording that grew is resumed where it ended, a replaced file becomes a new source whose
first commit marks the old one superseded, and every row keeps the picture that was embedded (a copy
of the image's bytes, or the track's best crop). A video commits in chunks, each with its resume point.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

from sen_infer.errors import GalleryError, IngestError, require_utf8
from sen_infer.gallery.protocol import Capabilities
from sen_infer.identity import DEFAULT_MAX_GAP, DEFAULT_THRESHOLD, link_tracks
from sen_infer.ingest.images import ImageIngest
from sen_infer.ingest.report import IngestReport
from sen_infer.ingest.video import VideoIngest, VideoOptions, ingest_video
from sen_infer.store import EXACT_MAX, FILTERED_EXACT_MAX, Row, VectorStore, peek


class Gallery:
    """One gallery: `Gallery.open(path, engine_dir)`; `add_images`, `add_video(s)`, `search`, `rows`, ...

    Args:
        store: the opened `VectorStore` (its model fingerprint must be the encoders').
        encoders: `sen_infer.engine.Encoders`, or any object with `manifest`, `dim` and `encode_inputs`.
    """

    capabilities = Capabilities(identities=True, tune_index=True, sharded=False)

    def __init__(self, store: VectorStore, encoders):
        self.store = store
        self.encoders = encoders
        self.crops_dir = store.dir / "crops"
        self.videos = VideoIngest(store, encoders.manifest, self.crops_dir)

    @classmethod
    def open(cls, path: str | os.PathLike, engine_dir=None, *, encoders=None, backend: str = "auto",
             exact_max: int = EXACT_MAX, filtered_exact_max: int = FILTERED_EXACT_MAX,
             create: bool = True) -> "Gallery":
        """Open the gallery at `path` for the model of `engine_dir` (or of the given `encoders`).

        Args:
            path: the gallery folder.
            engine_dir: the engine dir whose encoders embed what is ingested (ignored with `encoders`).
            encoders: already opened encoders, shared with a `Retriever`.
            backend: "auto", "onnx", "int8" or "tensorrt" (with `engine_dir`).
            exact_max / filtered_exact_max: up to how many rows (selected rows) search is exact.
            create: make the gallery when it does not exist; with False (how queries open it) a path
                without a gallery is an error, never a new gallery.

        Returns:
            The opened `Gallery`.

        Raises:
            GalleryError: no gallery at `path` (create=False), or one that cannot be opened.
            ModelMismatchError: the gallery was built with another model.
        """
        require_utf8(str(path), "gallery path", GalleryError)
        if not create and not (Path(path) / "gallery.sqlite").is_file():
            raise GalleryError(f"no gallery at {path} (gallery.sqlite is missing); ingest into it first")
        if encoders is None:
            if engine_dir is None:
                raise GalleryError("Gallery.open needs an engine_dir (or encoders)")
            from sen_infer.engine.encoders import Encoders

            encoders = Encoders(engine_dir, backend)
        store = VectorStore.open(path, encoders.manifest.fingerprint, encoders.dim, exact_max=exact_max,
                                 filtered_exact_max=filtered_exact_max, create=create)
        return cls(store, encoders)

    # ---- reading: the store's (see VectorStore for each) -------------------------------------------
    def search(self, query, k: int = 10, camera=None, since=None, until=None, per_track: bool = True,
               superseded: bool = False, per_person: bool = False, min_quality: float | None = None) -> list[Row]:
        """The best k rows for the vector `query` (`VectorStore.search`).

        Args:
            query: a query embedding, [dim] (normalised here), e.g. `Retriever.encode_text(...)[0]`.
            k: most rows returned.
            camera: a camera name or a list of names; an unknown name matches nothing.
            since / until: bounds on the rows' timestamps in seconds; a row without one never matches.
            per_track: one row per track. per_person: one row per linked person (`link_identities`).
            superseded: include rows of files replaced since they were ingested.
            min_quality: leave out rows whose crop score (`Row.quality`) is known and lower.

        Returns:
            `Row`s with their cosine `score`, best first (ties by key).

        Raises:
            GalleryError: a query of another size, or a database that cannot be read.
        """
        return self.store.search(query, k, camera, since, until, per_track, superseded, per_person, min_quality)

    def nearest(self, query, k: int = 10, camera=None, since=None, until=None, per_track: bool = True,
                superseded: bool = False, per_person: bool = False,
                min_quality: float | None = None) -> list[tuple[int, float]]:
        """`search` as (key, cosine) pairs, without reading the rows.

        Args:
            query, k, camera, since, until, per_track, superseded, per_person, min_quality: as `search`.

        Returns:
            (key, cosine) pairs, best first (ties by key).
        """
        return self.store.nearest(query, k, camera, since, until, per_track, superseded, per_person, min_quality)

    def rows(self, keys) -> dict[int, Row]:
        """The stored rows of `keys`; missing keys are left out.

        Args:
            keys: row keys (any iterable of ints).

        Returns:
            {key: `Row`} without `score`; `superseded` and `person` filled in.
        """
        return self.store.rows(keys)

    def keys(self, camera: str | None = None, superseded: bool = True) -> list[int]:
        """Every row's key (of one camera when given), in insertion order.

        Args:
            camera: only this camera's rows. superseded: include rows of files replaced since.

        Returns:
            Row keys, ascending.
        """
        return self.store.keys(camera, superseded)

    def embedding(self, key: int) -> np.ndarray:
        """Row `key`'s stored unit vector; `UnknownKey` when there is no such row.

        Returns:
            float32 [dim], at the float16 precision it is stored in.

        Raises:
            UnknownKey: no such row (never stored, removed, or damaged).
        """
        return self.store.embedding(key)

    def context(self, key: int, nearby: int = 8) -> tuple[list[int], list[int]]:
        """Keys of row `key`'s track and of its camera's rows nearest in time; `UnknownKey` when absent.

        Args:
            key: the row. nearby: most other rows of its camera returned (its own track's excluded).

        Returns:
            (keys of its track, keys of the nearby rows), each in time order.

        Raises:
            UnknownKey: no such row.
        """
        return self.store.context(key, nearby)

    def source_record(self, row: Row) -> dict | None:
        """The ingest record of the source `row` came from (path, content identity).

        Returns:
            The `sources` table's columns (source, kind, path, size, mtime_ns, head, resume_frame, frames,
            superseded, ...), or None for a source ingested without a record.
        """
        return self.store.source_record(row.source)

    def camera_summary(self) -> list[dict]:
        """Each camera with its row count and first and last time.

        Returns:
            [{"name", "rows", "first", "last"}] by name, rows without a camera (name None) last.
        """
        return self.store.camera_summary()

    def stats(self) -> dict:
        """Counts, cameras, time span and index figures (`python -m sen_infer info`).

        Returns:
            {"rows", "sources", "superseded_sources", "aliases", "tracks", "cameras", "time_span", "index_size",
            "damaged_rows", "index"}.
        """
        return self.store.stats()

    def check(self) -> dict:
        """The full consistency check of `info --check`: {"ok", "problems", ...figures}.

        Reads every page and every embedding: slow on a large gallery. A row found damaged is no longer
        served from then on.

        Returns:
            {"ok", "problems" (one line each), "rows", "usable_rows", "index_size", "max_vector_difference"}.
        """
        return self.store.check()

    def remove(self, keys) -> int:
        """Delete rows by key (logged in the gallery); returns how many existed.

        Args:
            keys: row keys; unknown ones are ignored. Their crop pictures stay on disk.

        Returns:
            How many of `keys` existed and were removed.

        Raises:
            GalleryError: the gallery is read-only or cannot be written.
        """
        return self.store.remove(keys)

    def tune_index(self, target: float = 0.99, queries: np.ndarray | None = None) -> dict:
        """Choose and store the search width reaching `target` recall@10 (`VectorStore.tune_index`).

        Args:
            target: the recall@10 against exact search to reach, with 95 % confidence.
            queries: [m, dim] query embeddings (your users' queries are best); None: its own vectors.

        Returns:
            What was measured and chosen ({"measured", "chosen", "reached", ...}).

        Raises:
            GalleryError: read-only, fewer than 20 rows, or queries of another size.
        """
        self.store.check_writable()
        return self.store.tune_index(target=target, queries=queries)

    def close(self) -> None:
        """Close this thread's database connection."""
        self.store.close()

    def __len__(self) -> int:
        return len(self.store)

    @staticmethod
    def count_rows(path) -> int:
        """Rows of the gallery at `path`, read without opening it (0 where none is written yet).

        Args:
            path: a gallery folder (a sharded root's shard).

        Returns:
            Its row count (damaged rows included); 0 where there is no gallery.

        Raises:
            GalleryError: its table cannot be read.
        """
        return peek.count_rows(Path(path))

    @property
    def dir(self) -> Path:
        """The gallery folder."""
        return self.store.dir

    @property
    def dim(self) -> int:
        """The embedding size."""
        return self.store.dim

    # ---- identities -------------------------------------------------------------------------------
    def link_identities(self, threshold: float | None = None, max_gap: float | None = None,
                        overlapping_views: bool = False) -> dict:
        """Link the gallery's tracks into persons across cameras and time gaps (`sen_infer.identity`) and
        store the result; every row's `person` and `query(per_person=True)` follow it. Re-running after
        more ingest relinks everything. Returns {"tracks", "persons", "linked_tracks", parameters}.

        Args:
            threshold: cosine two tracks' mean embeddings must reach (default `identity.DEFAULT_THRESHOLD`).
            max_gap: most seconds between one track's end and the other's start (default
                `identity.DEFAULT_MAX_GAP`).
            overlapping_views: cameras see the same ground, so tracks of two cameras may overlap in time.

        Returns:
            {"tracks", "persons", "linked_tracks", "threshold", "max_gap", "overlapping_views"}.

        Raises:
            IngestError: threshold outside [-1, 1] or max_gap not > 0. GalleryError: it cannot be written.
        """
        threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
        max_gap = DEFAULT_MAX_GAP if max_gap is None else float(max_gap)
        if not (-1.0 <= threshold <= 1.0) or not (max_gap > 0):
            raise IngestError(f"link threshold must lie in [-1, 1] and max_gap be > 0 seconds, "
                              f"got {threshold} and {max_gap}")
        summaries = self.store.track_summaries()
        person_of = link_tracks(summaries, threshold, max_gap, overlapping_views)
        params = {"threshold": threshold, "max_gap": max_gap, "overlapping_views": overlapping_views}
        self.store.set_persons(person_of, params)
        sizes = Counter(person_of.values())
        linked = sum(n for n in sizes.values() if n > 1)
        return {"tracks": len(person_of), "persons": len(sizes), "linked_tracks": linked, **params}

    def timeline(self, person: int) -> list:
        """The appearances (tracks) of `person` in time order across cameras (`identity.Appearance`).

        Args:
            person: a person id (`Row.person`); a track never linked is a person of its own.

        Returns:
            `Appearance`s; empty for an id the gallery does not know.
        """
        return self.store.appearances(int(person))

    # ---- ingest -----------------------------------------------------------------------------------
    def add_images(self, items, camera: str | None = None, timestamp: float | None = None,
                   track: int | None = None, batch_size: int = 64, progress=None) -> IngestReport:
        """Add whole images as crops, each read once and kept as a copy (`sen_infer.ingest.images`).

        Args:
            items: paths, folders (searched recursively) or BGR uint8 arrays.
            camera / timestamp / track: stored on every row.
            batch_size: most images embedded (and held in memory) at once.
            progress: called with 1 per item.

        Returns:
            The `IngestReport`; unreadable files are skipped and reported there, not raised.

        Raises:
            IngestError: a bad argument. GalleryError: the gallery cannot be written.
        """
        return ImageIngest(self.store, self.encoders, self.crops_dir).add(items, camera, timestamp, track,
                                                                          batch_size, progress)

    def source_done(self, source: str) -> bool:
        """Whether the current version of `source` (a resolved path) was ingested to its end.

        Args:
            source: the video's resolved path.

        Returns:
            False when never ingested, interrupted, or decoded short of its announced end.
        """
        return self.videos.source_done(source)

    def add_video(self, path: str | os.PathLike, camera: str | None = None, start_time: float | None = None,
                  detector: str = "default", stride: int = 2, min_box: tuple[int, int] = (16, 48),
                  crops_per_track: int = 4, chunk_seconds: float = 60.0, progress=None,
                  tracker: str = "motion") -> IngestReport:
        """Detect, track and embed the people of a video; one gallery row per track.

        The video commits in chunks of `chunk_seconds` of footage, each with its resume point, so
        memory is bounded by a chunk and a crash loses at most the chunk in progress. A recording that
        grew since it was ingested is resumed where it ended; one whose content changed (replaced, not
        grown) is a new source: its first chunk marks the old rows superseded (kept, hidden from queries
        unless asked for). One thread decodes, tracks and embeds in turn; `add_videos` overlaps them.

        Args:
            path: the video file.
            camera: its camera (default: from its name, `ingest.inputs.default_camera`).
            start_time: Unix time of its first frame (rows then carry wall-clock times).
            detector: see `sen_infer.vision.detection`; tracker: "iou" or "motion".
            stride: detect on every n-th frame. min_box: smallest (w, h) kept.
            crops_per_track: crops embedded (and averaged) per track.
            progress: called with the number of frames decoded.

        Returns:
            The `IngestReport`; an unreadable or replaced video is recorded there, not raised.

        Raises:
            IngestError: a bad argument. GalleryError: the gallery cannot be written.
        """
        opts = VideoOptions(camera, start_time, detector, stride, min_box, crops_per_track, chunk_seconds, tracker)
        return ingest_video(self.videos, self.encoders, path, opts, progress)

    def add_videos(self, paths, camera: str | None = None, start_time: float | None = None,
                   detector: str = "default", stride: int = 2, min_box: tuple[int, int] = (16, 48),
                   crops_per_track: int = 4, chunk_seconds: float = 60.0, tracker: str = "motion",
                   workers: int | None = None, batch_size: int | None = None, max_wait: float = 0.02,
                   progress=None) -> IngestReport:
        """Ingest many videos (cameras) at once as a pipeline (`sen_infer.ingest.pipeline`).

        `workers` videos are decoded, detected and tracked in threads of their own (default
        `pipeline.default_workers`) while one encoder thread embeds their crops in batches of up to
        `batch_size` (default: the encoders' batch size) across tracks and cameras, waiting at most
        `max_wait` seconds to fill one. Every video commits exactly as `add_video` would; a video that
        cannot be read or stored is reported and the others go on. `progress(frames, crops)` is called
        with the frames decoded and crops embedded since its last call. The other arguments are
        `add_video`'s (`camera`, when given, names every video's camera).

        Returns:
            The merged `IngestReport` (`seconds` wall time, `encoder_seconds` inside encoder calls).

        Raises:
            IngestError: a bad argument. GalleryError: the gallery cannot be written.
        """
        from sen_infer.ingest.pipeline import PipelineConfig, default_workers, run_pipeline

        opts = VideoOptions(camera, start_time, detector, stride, min_box, crops_per_track, chunk_seconds, tracker)
        config = PipelineConfig(default_workers() if workers is None else workers,
                                batch_size if batch_size is not None else self.encoders.batch_size, max_wait)
        self.store.check_writable()
        return run_pipeline(self.videos, self.encoders, [paths] if isinstance(paths, (str, os.PathLike))
                            else list(paths), opts, config, progress)
