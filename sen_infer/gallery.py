"""The ingest pipeline: decode, detect, track and embed images and video, and write the rows into a
`VectorStore` (sen_infer.store), which owns SQLite, the embeddings and the index.

A source is known by its content, not its path alone (path + size + mtime + a fingerprint of early
bytes): a recording that grew is resumed where it ended, a replaced file becomes a new source whose
first commit marks the old one superseded, and every row keeps the picture that was embedded (a copy
of the image's bytes, or the track's best crop). A video commits in chunks, each with its resume point.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from sen_infer.errors import GalleryError, IngestError, SourceConflict, VideoReadError, require_utf8
from sen_infer.preprocess import check_image_array, is_regular_file, read_bytes, to_input
from sen_infer.store import (EXACT_MAX, FILTERED_EXACT_MAX, Row, SourceRecord, VectorStore, normalise,
                             write_atomic)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg"}


@dataclass
class IngestReport:
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
        """Record an input whose ingest failed on our side (e.g. a crop could not be written)."""
        self.failed[_printable(item)] = reason

    def skip(self, item, reason: str) -> None:
        """Record an input that was not ingested, and why (one line)."""
        name = _printable(item)
        self.unreadable.append(name)
        self.reasons[name] = reason

    def merge(self, other: "IngestReport") -> None:
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


def _fingerprint_range(path: str, a: int, b: int) -> str:
    with open(path, "rb") as f:
        f.seek(a)
        return hashlib.sha1(f.read(b - a)).hexdigest()


def _file_identity(path: str) -> dict:
    """What identifies a file's content cheaply: size, mtime and a sha1 of up to 1 MiB of its early
    bytes, "a:b:sha1". The range skips the first 64 KiB (container headers that a recorder rewrites as
    the file grows: frame counts, sizes) and the last quarter (indexes written at the end), so a
    recording that grew keeps its fingerprint and a replaced one does not."""
    st = os.stat(path)
    a = min(65536, st.st_size // 2)
    b = max(a, min(a + (1 << 20), st.st_size * 3 // 4))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "head": f"{a}:{b}:{_fingerprint_range(path, a, b)}"}


def _same_beginning(path: str, head: str, size: int) -> bool:
    """Whether the file at `path` (now `size` bytes) still holds the bytes fingerprinted as `head`."""
    try:
        a, b, digest = head.split(":")
        a, b = int(a), int(b)
    except ValueError:
        return False
    return size >= b and _fingerprint_range(path, a, b) == digest


def _printable(item) -> str:
    """A path as text that can always be printed and stored, undecodable bytes shown as \\xNN."""
    return os.fsencode(str(item)).decode("utf-8", "backslashreplace")


def default_camera(source: str) -> str:
    """A video's camera when none is given: its file name with extension (cam.avi and cam.mp4 are two
    cameras), or for the common `<camera>/<file>` layout of recorders (cam07/2026-11-29_10.mp4) the
    folder's name when the file name looks like a time stamp."""
    p = Path(source)
    if any(ch.isdigit() for ch in p.stem) and not any(ch.isalpha() for ch in p.stem.replace("T", "")) \
            and p.parent.name:
        return p.parent.name
    return p.name


def write_jpeg(path: Path, img: np.ndarray, quality: int = 90) -> None:
    """Write a JPEG atomically (temp + fsync + rename) and check it: OSError when it cannot be stored."""
    ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"JPEG encoding failed for {path}")
    write_atomic(path, data.tobytes())


def _finite_time(value, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise IngestError(f"{what} must be a finite number of seconds, not {value!r}")
    return float(value)


def _camera_name(camera) -> str | None:
    if camera is None:
        return None
    if not isinstance(camera, str) or not camera.strip():
        raise IngestError(f"camera name must be a non-empty string, not {camera!r}")
    return require_utf8(camera, "camera name", IngestError)


def expand_inputs(paths, report: IngestReport, videos: bool = True) -> tuple[list[Path], list[Path]]:
    """(images, videos) from files and folders (searched recursively, sorted). Inputs that cannot be
    ingested (missing, not a regular file, a name that is not UTF-8, an unknown type named explicitly)
    go to `report` with the reason and never stop the rest; unrelated files inside a folder are ignored."""
    images, found_videos = [], []
    wanted = IMAGE_EXTENSIONS | (VIDEO_EXTENSIONS if videos else set())
    for p in map(Path, paths):
        if not os.path.lexists(p):
            report.skip(p, "no such file or folder")
            continue
        files = sorted(f for f in p.rglob("*") if not f.is_dir()) if p.is_dir() else [p]
        for f in files:
            ext = f.suffix.lower()
            if ext not in wanted and (p.is_dir() or videos):
                if not p.is_dir():  # named explicitly, but neither an image nor a video by its name
                    report.skip(f, f"not an image or video ({', '.join(sorted(wanted))})")
                continue  # an image named explicitly without a known extension is left to the decoder
            why = _unusable_file(str(f))
            if why is not None:
                report.skip(f, why)
                continue
            (found_videos if ext in VIDEO_EXTENSIONS and videos else images).append(f)
    return images, found_videos


def _unusable_file(path: str) -> str | None:
    """Why a file given to the ingest cannot be read as one (checked before OpenCV sees it), or None."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8 (rename it)"
    if not os.path.lexists(path):
        return "no such file"
    if not is_regular_file(path):
        return "not a regular file (FIFO, device, socket or broken link)"
    return None


class Gallery:
    """Ingest into a store: `Gallery.open(path, engine_dir)`; `add_images`, `add_video`. Reading (`search`,
    `rows`, `keys`, `remove`, `stats`, `check`) is the store's, reachable as `gallery.store` or here."""

    def __init__(self, store: VectorStore, encoders):
        self.store = store
        self.encoders = encoders
        self.crops_dir = store.dir / "crops"

    @classmethod
    def open(cls, path: str | os.PathLike, engine_dir=None, *, encoders=None, backend: str = "auto",
             exact_max: int = EXACT_MAX, filtered_exact_max: int = FILTERED_EXACT_MAX,
             create: bool = True) -> "Gallery":
        """Open the gallery at `path` for the model of `engine_dir` (or given encoders). With
        create=False (how queries open it) a path without a gallery is an error, never a new gallery."""
        require_utf8(str(path), "gallery path", GalleryError)
        if not create and not (Path(path) / "gallery.sqlite").is_file():
            raise GalleryError(f"no gallery at {path} (gallery.sqlite is missing); ingest into it first")
        if encoders is None:
            if engine_dir is None:
                raise GalleryError("Gallery.open needs an engine_dir (or encoders)")
            from sen_infer.encoders import Encoders

            encoders = Encoders(engine_dir, backend)
        store = VectorStore.open(path, encoders.manifest.fingerprint, encoders.dim, exact_max=exact_max,
                                 filtered_exact_max=filtered_exact_max, create=create)
        return cls(store, encoders)

    # ---- the store's reading side, here for convenience ---------------------------------------
    def search(self, query, k: int = 10, camera=None, since=None, until=None, per_track: bool = True,
               superseded: bool = False, per_person: bool = False) -> list[Row]:
        return self.store.search(query, k, camera, since, until, per_track, superseded, per_person)

    def link_identities(self, threshold: float | None = None, max_gap: float | None = None,
                        overlapping_views: bool = False) -> dict:
        """Link the gallery's tracks into persons across cameras and time gaps (`sen_infer.identity`) and
        store the result; every row's `person` and `query(per_person=True)` follow it. Re-running after
        more ingest relinks everything. Returns {"tracks", "persons", "linked_tracks", parameters}."""
        from sen_infer.identity import DEFAULT_MAX_GAP, DEFAULT_THRESHOLD, link_tracks

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
        """The appearances (tracks) of `person` in time order across cameras (`identity.Appearance`)."""
        return self.store.appearances(int(person))

    def rows(self, keys) -> dict[int, Row]:
        return self.store.rows(keys)

    def keys(self, camera: str | None = None, superseded: bool = True) -> list[int]:
        return self.store.keys(camera, superseded)

    def remove(self, keys) -> int:
        return self.store.remove(keys)

    def embedding(self, key: int) -> np.ndarray:
        return self.store.embedding(key)

    def context(self, key: int, nearby: int = 8) -> tuple[list[int], list[int]]:
        """Keys of row `key`'s track and of its camera's rows nearest in time (`VectorStore.context`)."""
        return self.store.context(key, nearby)

    def source_record(self, row: Row) -> dict | None:
        """The ingest record of the source `row` came from (path, content identity)."""
        return self.store.source_record(row.source)

    def camera_summary(self) -> list[dict]:
        return self.store.camera_summary()

    def stats(self) -> dict:
        return self.store.stats()

    def check(self) -> dict:
        return self.store.check()

    def close(self) -> None:
        self.store.close()

    def __len__(self) -> int:
        return len(self.store)

    @property
    def dir(self) -> Path:
        return self.store.dir

    @property
    def dim(self) -> int:
        return self.store.dim

    @property
    def read_only(self) -> bool:
        return self.store.read_only

    @property
    def damaged(self) -> list[int]:
        return self.store.damaged

    @property
    def exact_max(self) -> int:
        return self.store.exact_max

    # ---- images -------------------------------------------------------------------------------
    def add_images(self, items, camera: str | None = None, timestamp: float | None = None,
                   track: int | None = None, batch_size: int = 64, progress=None) -> IngestReport:
        """Add whole images (paths, folders searched recursively, or BGR arrays) as crops. Unreadable
        files are skipped and reported. Each image is read once: its bytes are fingerprinted, decoded,
        preprocessed to the model's input and copied into the gallery (`crops/images/`), so the row
        shows exactly the picture that was embedded even if the file is later replaced, and memory
        holds at most `batch_size` model inputs whatever the photos' resolution. A file whose content
        changed since it was ingested is a new source; the old rows stay, marked superseded."""
        timestamp, camera = _finite_time(timestamp, "timestamp"), _camera_name(camera)
        if track is not None and (isinstance(track, bool) or not isinstance(track, int)):
            raise IngestError(f"track must be an integer, not {track!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise IngestError(f"batch_size must be an integer >= 1, not {batch_size!r}")
        self.store.check_writable()
        report = IngestReport()
        t0 = time.perf_counter()
        pending: list[tuple[Row, SourceRecord | None, np.ndarray]] = []
        m = self.encoders.manifest

        def flush():
            if not pending:
                return
            emb = self.encoders.encode_inputs(np.stack([x for *_, x in pending]))
            report.crops_embedded += len(pending)
            try:
                added, existing = self.store.add_embeddings(emb, [r for r, *_ in pending],
                                                            [s for _, s, _ in pending if s is not None])
            except SourceConflict:  # one file of the batch changed meanwhile: store the others one by one
                added = existing = 0
                for (row, record, _), e in zip(pending, emb):
                    try:
                        a, x = self.store.add_embeddings(e[None], [row], record)
                        added, existing = added + a, existing + x
                    except SourceConflict as conflict:
                        report.fail(record.path if record else row.source, str(conflict))
            report.added += added
            report.skipped_existing += existing
            pending.clear()

        def tick():
            if progress is not None:
                progress(1)

        def inputs():  # in the order given, folders expanded where they stand
            for item in items:
                if isinstance(item, np.ndarray):
                    yield item
                else:
                    yield from expand_inputs([item], report, videos=False)[0]

        for item in inputs():
            try:
                got = self._array_image(item, report) if isinstance(item, np.ndarray) else \
                    self._file_image(item, report)
            except OSError as e:
                what = f"array {_array_digest(item)}" if isinstance(item, np.ndarray) else item
                report.fail(what, f"cannot store a copy in {e.filename or self.crops_dir}: {e.strerror or e}")
                got = None
            if got is not None:
                img, key, crop_path, record = got
                h, w = img.shape[:2]
                row = Row(key, camera, -1, timestamp, (0, 0, w, h), track, crop_path)
                pending.append((row, record, to_input(img, m.image_size, m.mean, m.std)))
                del img
            if len(pending) >= batch_size:
                flush()
            tick()
        flush()
        if report.added:
            self.store.persist_index()
        report.seconds = time.perf_counter() - t0
        return report

    def _array_image(self, img: np.ndarray, report: IngestReport):
        """An in-memory picture: content-addressed ("array:<sha1>"), kept as a lossless PNG."""
        check_image_array(img)
        digest = _array_digest(img)
        source, path = f"array:{digest}", self.crops_dir / "arrays" / f"{digest}.png"
        if self.store.has_row(source, -1, (0, 0, img.shape[1], img.shape[0])):
            report.skipped_existing += 1
            return None
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            ok, data = cv2.imencode(".png", img)
            if not ok:
                raise OSError(f"PNG encoding failed for {path}")
            write_atomic(path, data.tobytes())
        return img, source, str(path), None

    def _file_image(self, item, report: IngestReport):
        """(picture, source key, stored copy, source record) for an image file; None when it is skipped
        (unreadable, or this very content was already ingested from this path)."""
        path = str(Path(item).resolve())
        try:
            st = os.stat(path)
        except OSError:
            st = None
        data = None if st is None else read_bytes(path)
        img = None if data is None else cv2.imdecode(data, cv2.IMREAD_COLOR)
        if img is None:
            report.skip(item, "not a readable image (missing, empty, truncated or another format)")
            return None
        digest = hashlib.sha1(data).hexdigest()
        head = f"sha1:{digest}"
        state = self.store.source(path)
        if state is not None and state.get("head") == head:
            report.skipped_existing += 1
            return None
        supersedes, first = None, True
        if state is not None and state.get("head") is None and self._same_as_stored(state["source"], img):
            first = False  # ingested before content was fingerprinted, and still the same picture
        elif state is not None:
            supersedes = state["source"]
            report.notes.append(f"{_printable(item)}: its content changed since it was ingested; the earlier "
                                f"rows stay, marked superseded")
        key = state["source"] if state is not None and not supersedes else self.store.new_source_key(path, head)
        suffix = Path(path).suffix.lower() if Path(path).suffix.lower() in IMAGE_EXTENSIONS else ".img"
        copy = self.crops_dir / "images" / digest[:2] / f"{digest}{suffix}"
        if not copy.is_file():
            copy.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(copy, data.tobytes())
        record = SourceRecord(key, "image", path=path, size=st.st_size, mtime_ns=st.st_mtime_ns, head=head,
                              supersedes=supersedes, first=first)
        return img, key, str(copy), record

    def _same_as_stored(self, source: str, img: np.ndarray) -> bool:
        """Whether `img` is the picture embedded for `source` by a version that kept no content
        fingerprint: same size and the same embedding up to float16 storage (cosine > 0.999)."""
        rows = self.store.rows_of(source)
        if len(rows) != 1 or rows[0].bbox[2:] != (img.shape[1], img.shape[0]):
            return False
        m = self.encoders.manifest
        new = normalise(self.encoders.encode_inputs(to_input(img, m.image_size, m.mean, m.std)[None]))[0]
        try:
            return float(new @ normalise(self.store.embedding(rows[0].key))) > 0.999
        except KeyError:  # a damaged row: treat the file as new content
            return False

    # ---- video --------------------------------------------------------------------------------
    def source_done(self, source: str) -> bool:
        """Whether the current version of `source` was ingested to its end (not interrupted, not incomplete)."""
        state = self.store.source(str(source))
        return state is not None and state.get("resume_frame") is None

    def add_video(self, path: str | os.PathLike, camera: str | None = None, start_time: float | None = None,
                  detector: str = "mog2", stride: int = 2, min_box: tuple[int, int] = (16, 48),
                  crops_per_track: int = 4, chunk_seconds: float = 60.0, progress=None,
                  tracker: str = "motion") -> IngestReport:
        """Detect, track and embed the people of a video; one gallery row per track.

        `detector`: see `sen_infer.detection`; `tracker`: "iou" or "motion" (`sen_infer.tracking`).

        The video commits in chunks of `chunk_seconds` of footage, each with its resume point, so
        memory is bounded by a chunk and a crash loses at most the chunk in progress. A recording that
        grew since it was ingested is resumed where it ended; one whose content changed (replaced, not
        grown) is a new source: its first chunk marks the old rows superseded (kept, hidden from queries
        unless asked for).

        One thread decodes, tracks and embeds in turn; `add_videos` runs many videos (cameras) at once
        with decoding and embedding overlapped, and stores the same rows."""
        from sen_infer.video import iter_chunks

        opts = VideoOptions(camera, start_time, detector, stride, min_box, crops_per_track, chunk_seconds, tracker)
        self.store.check_writable()
        report = IngestReport()
        t0 = time.perf_counter()
        plan = self.plan_video(path, opts, report)
        if plan is not None:
            try:
                for video in iter_chunks(plan.path_text, **opts.chunk_args(plan.start_frame), progress=progress):
                    tracks = chunk_tracks(video)
                    embeddings = []
                    for _, _, crops in tracks:
                        inputs = self.crop_inputs(crops)
                        t1 = time.perf_counter()
                        embeddings.append(self.encoders.encode_inputs(inputs))
                        report.encoder_seconds += time.perf_counter() - t1
                        report.encoder_batches += 1
                    self.commit_chunk(plan, video, tracks, embeddings, report)
            except (VideoReadError, SourceConflict, OSError) as e:
                video_failed(plan, e, report)
        if report.added:
            self.store.persist_index()
        report.seconds = time.perf_counter() - t0
        return report

    def add_videos(self, paths, camera: str | None = None, start_time: float | None = None,
                   detector: str = "mog2", stride: int = 2, min_box: tuple[int, int] = (16, 48),
                   crops_per_track: int = 4, chunk_seconds: float = 60.0, tracker: str = "motion",
                   workers: int | None = None, batch_size: int | None = None, max_wait: float = 0.02,
                   progress=None) -> IngestReport:
        """Ingest many videos (cameras) at once as a pipeline (`sen_infer.pipeline`): `workers` videos are
        decoded, detected and tracked in threads of their own (default: one per 4 cores, at least one,
        `pipeline.default_workers`) while one encoder thread embeds their
        crops in batches of up to `batch_size` (default: the encoders' batch size) across tracks and
        cameras, waiting at most `max_wait` seconds to fill one. Every video commits exactly as
        `add_video` would (chunks in order, each with its resume point, the same rows); a video that
        cannot be read or stored is reported and the others go on. `progress(frames, crops)` is called
        from this thread with the frames decoded and crops embedded since its last call. The other
        arguments are `add_video`'s (`camera`, when given, names every video's camera)."""
        from sen_infer.pipeline import PipelineConfig, default_workers, run_pipeline

        opts = VideoOptions(camera, start_time, detector, stride, min_box, crops_per_track, chunk_seconds, tracker)
        config = PipelineConfig(default_workers() if workers is None else workers,
                                batch_size if batch_size is not None else self.encoders.batch_size, max_wait)
        self.store.check_writable()
        return run_pipeline(self, [paths] if isinstance(paths, (str, os.PathLike)) else list(paths), opts, config,
                            progress)

    # the steps add_video and the pipeline share (one definition of what a video commits)
    def plan_video(self, path, opts: "VideoOptions", report: IngestReport) -> "VideoPlan | None":
        """Where the ingest of `path` starts and under which source key it commits; None when there is
        nothing to do (recorded in `report`: an unusable file, or one already ingested to its end)."""
        path_text = str(Path(path).resolve())
        why = _unusable_file(path_text)
        if why is not None:
            report.skip(path, why)
            return None
        identity = _file_identity(path_text)
        state = self.store.source(path_text)
        start_frame, supersedes, first = 0, None, True
        if state is None:
            key = self.store.new_source_key(path_text, identity["head"])
        elif state.get("head") and not _same_beginning(path_text, state["head"], identity["size"]):
            key, supersedes = self.store.new_source_key(path_text, identity["head"]), state["source"]
            report.notes.append(f"{_printable(path)}: its content changed since it was ingested (replaced, not "
                                f"grown): ingested as a new source; the earlier rows stay, marked superseded")
        else:
            key, first = state["source"], False
            if state.get("resume_frame") is not None:
                start_frame = int(state["resume_frame"])  # an interrupted or incomplete ingest: go on
            elif state.get("size") is not None and identity["size"] > state["size"]:
                start_frame = int(state["frames"] or 0)  # a recording that grew: resume where it ended
            else:
                report.skipped_existing += 1
                return None
        camera = opts.camera if opts.camera is not None else default_camera(path_text)
        crop_dir = self.crops_dir / hashlib.sha1(key.encode()).hexdigest()[:16]
        return VideoPlan(path, path_text, identity, key, camera, opts.start_time, start_frame, supersedes, first,
                         crop_dir)

    def crop_inputs(self, crops) -> np.ndarray:
        """The model inputs (float32 [n, 3, H, W]) of a track's chosen crops."""
        m = self.encoders.manifest
        return np.stack([to_input(c.crop, m.image_size, m.mean, m.std) for c in crops])

    def commit_chunk(self, plan: "VideoPlan", video, tracks: list, embeddings: list[np.ndarray],
                     report: IngestReport) -> None:
        """Store one chunk of a video in one transaction with its resume point: one row per track (the
        normalised mean of its crops' `embeddings`, its best crop written as a JPEG first). Raises
        SourceConflict when the file was replaced meanwhile, OSError when a crop cannot be written:
        then nothing of the chunk is stored and the resume point stays where it was."""
        report.frames = video.frames
        report.notes += [f"{plan.path}: {n}" for n in video.notes if f"{plan.path}: {n}" not in report.notes]
        rows, vectors, spans = self._video_rows(video, tracks, embeddings, plan, report)
        if not _same_beginning(plan.path_text, plan.identity["head"], os.path.getsize(plan.path_text)):
            raise SourceConflict(f"{_printable(plan.path)}: the file was replaced while it was being read; the "
                                 f"chunks committed before stay, this one was not stored")
        resume = None if video.final and not video.incomplete else video.frames
        record = SourceRecord(plan.key, "video", path=plan.path_text, resume_frame=resume, frames=video.frames,
                              size=plan.identity["size"], mtime_ns=plan.identity["mtime_ns"],
                              head=plan.identity["head"], supersedes=plan.supersedes, first=plan.first)
        added, existing = self.store.add_embeddings(vectors, rows, record, local_tracks=True, spans=spans)
        plan.supersedes, plan.first = None, False  # done by the first commit
        report.added += added
        report.skipped_existing += existing
        report.tracks += len(rows)
        if video.incomplete:  # committed (they are real people) but a rerun looks again
            report.incomplete[str(plan.path)] = f"decoded {video.frames} of {video.expected} frames"

    def _video_rows(self, video, tracks: list, embeddings: list[np.ndarray], plan: "VideoPlan",
                    report) -> tuple[list[Row], np.ndarray, dict]:
        """One row per track of a chunk: the normalised mean of its crops' embeddings, its best crop
        stored as a JPEG (written and checked before anything is committed); and each track's span
        (first and last frame, their times) for identity linking."""
        plan.crop_dir.mkdir(parents=True, exist_ok=True)
        rows, vectors, spans = [], [], {}
        base = plan.start_time if plan.start_time is not None else 0.0
        for (n, track, crops), emb in zip(tracks, embeddings):
            report.crops_embedded += len(crops)
            best = crops[0]
            crop_path = plan.crop_dir / f"track{track.id:05d}_f{best.frame:06d}.jpg"
            write_jpeg(crop_path, best.crop)
            ts = base + video.time(best.frame)
            # `n` is local to this chunk: the store makes it a gallery-wide id inside its transaction
            rows.append(Row(plan.key, plan.camera, best.frame, ts, tuple(best.box), n, str(crop_path)))
            vectors.append(normalise(emb).mean(axis=0))
            first, last = track.observations[0].frame, track.observations[-1].frame
            spans[n] = (first, last, base + video.time(first), base + video.time(last))
        return rows, np.asarray(vectors, np.float32).reshape(len(rows), self.dim), spans


@dataclass
class VideoOptions:
    """How videos become tracks and commits; checked once, shared by `add_video` and `add_videos`."""
    camera: str | None = None
    start_time: float | None = None
    detector: str = "mog2"
    stride: int = 2
    min_box: tuple[int, int] = (16, 48)
    crops_per_track: int = 4
    chunk_seconds: float = 60.0
    tracker: str = "motion"

    def __post_init__(self):
        self.start_time, self.camera = _finite_time(self.start_time, "start_time"), _camera_name(self.camera)
        if isinstance(self.stride, bool) or not isinstance(self.stride, int) or self.stride < 1:
            raise IngestError(f"stride must be an integer >= 1 (detect on every n-th frame), not {self.stride!r}")
        c = self.chunk_seconds
        if isinstance(c, bool) or not (isinstance(c, (int, float)) and math.isfinite(c) and c > 0):
            raise IngestError(f"chunk_seconds must be a positive number, not {c!r}")

    def chunk_args(self, start_frame: int) -> dict:
        """Keyword arguments of `video.iter_chunks` for a video resumed at `start_frame`."""
        return dict(detector=self.detector, stride=self.stride, min_box=self.min_box,
                    crops_per_track=self.crops_per_track, chunk_seconds=self.chunk_seconds,
                    start_frame=start_frame, tracker=self.tracker)


@dataclass
class VideoPlan:
    """One video's ingest: the source key it commits under, where it starts, and what its first commit
    must record (the superseded version, whether the key is new)."""
    path: object  # as given, for messages
    path_text: str  # resolved
    identity: dict  # size, mtime_ns, head (`_file_identity`) when the ingest began
    key: str
    camera: str
    start_time: float | None
    start_frame: int
    supersedes: str | None
    first: bool
    crop_dir: Path


def chunk_tracks(video) -> list:
    """(chunk-local track number, track, chosen crops) of the tracks of a chunk that have crops; the
    numbers count every track of the chunk, so they do not depend on how the crops are embedded."""
    return [(n, track, crops) for n, (track, crops) in enumerate(video.tracks, start=1) if crops]


def video_failed(plan: VideoPlan, error: Exception, report: IngestReport) -> None:
    """Record why a video stopped: unreadable (skipped), replaced while read, or a crop not writable
    (failed). Chunks committed before stay; the one in progress was not stored."""
    if isinstance(error, VideoReadError):
        report.skip(plan.path, str(error))
    elif isinstance(error, SourceConflict):  # replaced while it was being read: the chunks so far stay
        report.fail(plan.path, str(error))
    else:  # OSError: a crop that cannot be stored: this chunk is not committed, the resume point stays
        report.fail(plan.path, f"cannot write crop {error.filename or plan.crop_dir}: {error.strerror or error}")


def _array_digest(img) -> str:
    return hashlib.sha1(np.ascontiguousarray(img).tobytes()).hexdigest()[:20] if isinstance(img, np.ndarray) else "?"
