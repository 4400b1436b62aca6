"""Videos into a store: plan (where to start, under which source key), the one chunk loop (decode,
detect, track, crop inputs), and the commit of a chunk with its resume point.

Every way of ingesting a video walks it with `chunk_jobs` and stores it with `VideoIngest.commit`:
`Gallery.add_video` (one thread, `ingest_video`), the pipeline (`sen_infer.ingest.pipeline`: producers
walk, one encoder embeds, the caller commits) and the Ray ingest (`sen_infer.cluster`: workers walk,
encoder actors embed, one writer actor per shard commits). They differ only in where each step runs.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sen_infer.engine.preprocess import to_input
from sen_infer.errors import DuplicateContent, IngestError, SourceConflict, VideoReadError
from sen_infer.files import write_atomic
from sen_infer.ingest.inputs import (camera_name, default_camera, file_identity, finite_time, missing_head,
                                     same_beginning, unusable_file)
from sen_infer.ingest.report import IngestReport, printable
import sen_infer.store.aliases as aliases
from sen_infer.store import Row, SourceRecord, normalise
from sen_infer.vision.detection import DEFAULT, default_detector

EXPECTED_ERRORS = (VideoReadError, SourceConflict, OSError)  # one video's problem; other videos go on


def write_jpeg(path: Path, img: np.ndarray, quality: int = 90) -> None:
    """Write a JPEG atomically (temp + fsync + rename) and check it: OSError when it cannot be stored."""
    ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"JPEG encoding failed for {path}")
    write_atomic(path, data.tobytes())



@dataclass
class VideoOptions:
    """How videos become tracks and commits; checked once, shared by `add_video` and `add_videos`."""
    camera: str | None = None
    start_time: float | None = None
    detector: str = "default"  # resolved here to what it stands for (`vision.detection.default_detector`)
    stride: int = 2
    min_box: tuple[int, int] = (16, 48)
    crops_per_track: int = 4
    chunk_seconds: float = 60.0
    tracker: str = "motion"

    def __post_init__(self):
        self.start_time, self.camera = finite_time(self.start_time, "start_time"), camera_name(self.camera)
        if self.detector in (None, DEFAULT):
            self.detector = default_detector()
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
    identity: dict  # size, mtime_ns, head (`inputs.file_identity`) when the ingest began
    key: str
    camera: str
    start_time: float | None
    start_frame: int
    supersedes: str | None
    first: bool
    crop_dir: Path
    record_path: str = ""  # the path the source is recorded under (an alias's: the first name); default path_text

    def __post_init__(self):
        self.record_path = self.record_path or self.path_text


def chunk_tracks(video) -> list:
    """(chunk-local track number, track, chosen crops) of the tracks of a chunk that have crops; the
    numbers count every track of the chunk, so they do not depend on how the crops are embedded."""
    return [(n, track, crops) for n, (track, crops) in enumerate(video.tracks, start=1) if crops]


def video_failed(plan: VideoPlan, error: Exception, report: IngestReport, store=None) -> None:
    """Record why a video stopped: unreadable (skipped), replaced while read, a copy another ingest stored
    first (an alias of it, in `store`), or a crop not writable (failed). Chunks committed before stay; the
    one in progress was not stored."""
    if isinstance(error, DuplicateContent) and store is not None:
        aliases.add_alias(store, plan.path_text, error.twin)
        report.skipped_existing += 1
        report.notes.append(f"{printable(plan.path)}: same content as {printable(error.twin_path or error.twin)}, "
                            f"stored by another ingest at the same time: recorded as another name of it")
    elif isinstance(error, VideoReadError):
        report.skip(plan.path, str(error))
    elif isinstance(error, SourceConflict):  # replaced while it was being read: the chunks so far stay
        report.fail(plan.path, str(error))
    else:  # OSError: a crop that cannot be stored: this chunk is not committed, the resume point stays
        report.fail(plan.path, f"cannot write crop {error.filename or plan.crop_dir}: {error.strerror or error}")



@dataclass
class ChunkJob:
    """One decoded chunk of a video on its way to the encoder and the commit."""
    chunk: object  # vision.decode.VideoTracks
    tracks: list  # chunk_tracks(chunk): (chunk-local number, track, chosen crops)
    inputs: list  # per track: float32 [crops, 3, H, W] model inputs of its chosen crops


def crop_inputs(crops, manifest) -> np.ndarray:
    """The model inputs (float32 [n, 3, H, W]) of a track's chosen crops, for the model of `manifest`."""
    return np.stack([to_input(c.crop, manifest.image_size, manifest.mean, manifest.std) for c in crops])


def chunk_jobs(plan: VideoPlan, opts: VideoOptions, manifest, progress=None):
    """The chunk loop: decode, detect and track the planned video from its start frame, one `ChunkJob` per
    chunk of `opts.chunk_seconds`. `progress(frames)` is called as frames decode (it may raise to stop)."""
    from sen_infer.vision.decode import iter_chunks

    for chunk in iter_chunks(plan.path_text, **opts.chunk_args(plan.start_frame), progress=progress):
        tracks = chunk_tracks(chunk)
        yield ChunkJob(chunk, tracks, [crop_inputs(crops, manifest) for _, _, crops in tracks])


class VideoIngest:
    """Plans and commits videos into `store` (rows embedded by the model of `manifest`), their best crops
    kept under `crops_dir`. Embedding is the caller's: here are the steps every ingest path shares."""

    def __init__(self, store, manifest, crops_dir: Path):
        self.store, self.manifest, self.crops_dir = store, manifest, Path(crops_dir)
        # content planned by this object, not yet committed: a copy in the same batch (another producer
        # thread, the same shard writer) is an alias of it, not a second source
        self.planned: dict[str, tuple[str, str]] = {}  # head -> (source key, recorded path)
        self.plan_lock = threading.Lock()

    def source_done(self, source: str) -> bool:
        """Whether the current version of `source` was ingested to its end (not interrupted, not incomplete)."""
        state = self.store.source(str(source))
        return state is not None and state.get("resume_frame") is None

    def plan(self, path, opts: VideoOptions, report: IngestReport) -> VideoPlan | None:
        """Where the ingest of `path` starts and under which source key it commits; None when there is
        nothing to do (recorded in `report`: an unusable file, or content already ingested to its end).

        The rule (docs/sdk.md, "Sources"): content already stored under another path is an alias of that
        source, never ingested again (resumed from where it stopped, if it stopped); new content at a known
        path is a new source, superseding the old one only when it claims the same start time (a re-export
        of the same recording; a recorder reusing the path for new footage keeps both); a file that grew
        is resumed."""
        path_text = str(Path(path).resolve())
        why = unusable_file(path_text) or missing_head(path_text)
        if why is not None:
            report.skip(path, why)
            return None
        identity = file_identity(path_text)
        with self.plan_lock:
            plan = self._plan(path, path_text, identity, opts, report)
            if plan is not None:
                self.planned.setdefault(identity["head"], (plan.key, plan.record_path))
            return plan

    # long: one decision table (alias, new source, superseding or not, resume, grown, done), kept together
    def _plan(self, path, path_text: str, identity: dict, opts: VideoOptions, report) -> VideoPlan | None:
        """`plan` once the file is known usable and fingerprinted (under the plan lock)."""
        key, record_path = self.planned.get(identity["head"], (None, None))
        if key is not None and record_path != path_text:  # a copy of a video this batch is ingesting
            if aliases.add_alias(self.store, path_text, key):
                report.notes.append(f"{printable(path)}: same content as {printable(record_path)}, ingested in "
                                    f"this run: recorded as another name of it, not stored twice")
            report.skipped_existing += 1
            return None
        state, record_path = aliases.by_content(self.store, identity["head"], "video"), path_text
        if state is not None and state.get("path") not in (None, path_text):
            record_path = state["path"]  # this content is stored: `path` is another name of it
            if aliases.add_alias(self.store, path_text, state["source"]):
                report.notes.append(f"{printable(path)}: same content as {printable(state['path'])}, already in "
                                    f"the gallery: recorded as another name of it, not stored twice")
        elif state is None:
            state = self.store.source(path_text)
        start_frame, supersedes, first = 0, None, True
        if state is None:
            key = self.store.new_source_key(path_text, identity["head"])
        elif state.get("head") and not same_beginning(path_text, state["head"], identity["size"]):
            key = self.store.new_source_key(path_text, identity["head"])
            if state.get("start_time") == opts.start_time:
                supersedes = state["source"]
                report.notes.append(f"{printable(path)}: its content changed since it was ingested (replaced, not "
                                    f"grown): ingested as a new source; the earlier rows stay, marked superseded")
            else:
                report.notes.append(f"{printable(path)}: new footage at a path ingested before (another start "
                                    f"time): ingested as a new source beside the earlier one")
        else:
            key, first = state["source"], False
            if state.get("resume_frame") is not None:
                start_frame = int(state["resume_frame"])  # an interrupted or incomplete ingest: go on
                if self._ended_at(path, path_text, identity, state, report):
                    return None
            elif state.get("size") is not None and identity["size"] > state["size"]:
                start_frame = int(state["frames"] or 0)  # a recording that grew: resume where it ended
            else:
                report.skipped_existing += 1
                if opts.start_time is not None and state.get("start_time") not in (None, opts.start_time):
                    report.notes.append(f"{printable(path)}: already in the gallery with start time "
                                        f"{state['start_time']:.0f}; not stored again with {opts.start_time:.0f}")
                return None
        camera, start_time = opts.camera if opts.camera is not None else default_camera(record_path), opts.start_time
        if record_path != path_text:  # resuming a recording under another name: its own clock and camera
            start_time = state["start_time"] if state.get("start_time") is not None else start_time
            earlier = self.store.rows_of(state["source"], 1)
            camera = earlier[0].camera if opts.camera is None and earlier else camera
        crop_dir = self.crops_dir / hashlib.sha1(key.encode()).hexdigest()[:16]
        return VideoPlan(path, path_text, identity, key, camera, start_time, start_frame, supersedes, first,
                         crop_dir, record_path)

    def done(self, plan: VideoPlan) -> None:
        """The ingest of `plan` ended (to its end, or stopped): its content is no longer in flight, and what
        it committed is found by content from now on."""
        with self.plan_lock:
            if self.planned.get(plan.identity["head"], (None,))[0] == plan.key:
                del self.planned[plan.identity["head"]]

    def _ended_at(self, path, path_text: str, identity: dict, state: dict, report: IngestReport) -> bool:
        """Whether an ingest that stopped short of the container's frame count stopped at the real end: the
        file is unchanged since, and the decoder has no frame at the resume point. Then the source is
        recorded complete (no rows change) and the file is not decoded again on every run."""
        from sen_infer.vision.decode import readable_at

        resume = int(state["resume_frame"])
        if identity["size"] != state.get("size") or identity["mtime_ns"] != state.get("mtime_ns"):
            return False
        try:
            if readable_at(path_text, resume):
                return False
        except VideoReadError:
            return False  # the ingest itself reports it
        record = SourceRecord(state["source"], "video", path=state.get("path") or path_text, resume_frame=None,
                              frames=resume,
                              size=identity["size"], mtime_ns=identity["mtime_ns"], head=state.get("head"))
        self.store.add_embeddings(np.zeros((0, self.store.dim), np.float32), [], record)
        report.notes.append(f"{printable(path)}: decoding ends at frame {resume}, short of the count its container "
                            f"states, and the file is unchanged since: recorded as complete")
        report.skipped_existing += 1
        return True

    def commit(self, plan: VideoPlan, video, tracks: list, embeddings: list[np.ndarray],
               report: IngestReport) -> None:
        """Store one chunk of a video in one transaction with its resume point: one row per track (the
        normalised mean of its crops' `embeddings`, its best crop written as a JPEG first). Raises
        SourceConflict when the file was replaced meanwhile, OSError when a crop cannot be written:
        then nothing of the chunk is stored and the resume point stays where it was."""
        report.frames = video.frames
        report.notes += [f"{plan.path}: {n}" for n in video.notes if f"{plan.path}: {n}" not in report.notes]
        rows, vectors, spans = self._video_rows(video, tracks, embeddings, plan, report)
        if not same_beginning(plan.path_text, plan.identity["head"], os.path.getsize(plan.path_text)):
            raise SourceConflict(f"{printable(plan.path)}: the file was replaced while it was being read; the "
                                 f"chunks committed before stay, this one was not stored")
        resume = None if video.final and not video.incomplete else video.frames
        record = SourceRecord(plan.key, "video", path=plan.record_path, resume_frame=resume, frames=video.frames,
                              size=plan.identity["size"], mtime_ns=plan.identity["mtime_ns"],
                              head=plan.identity["head"], supersedes=plan.supersedes, first=plan.first,
                              start_time=plan.start_time)
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
            rows.append(Row(plan.key, plan.camera, best.frame, ts, tuple(best.box), n, str(crop_path),
                            quality=round(float(best.score), 4)))  # the score of the crop the row shows
            vectors.append(normalise(emb).mean(axis=0))
            first, last = track.observations[0].frame, track.observations[-1].frame
            spans[n] = (first, last, base + video.time(first), base + video.time(last))
        return rows, np.asarray(vectors, np.float32).reshape(len(rows), self.store.dim), spans



def ingest_video(ingest: VideoIngest, encoders, path, opts: VideoOptions, progress=None) -> IngestReport:
    """One video in one thread: the chunk loop, each chunk's crops embedded by `encoders`, then committed.
    A video that cannot be read or stored is recorded in the report (`video_failed`), not raised."""
    ingest.store.check_writable()
    report = IngestReport()
    t0 = time.perf_counter()
    plan = ingest.plan(path, opts, report)
    if plan is not None:
        try:
            for job in chunk_jobs(plan, opts, ingest.manifest, progress):
                embeddings = []
                for inputs in job.inputs:
                    t1 = time.perf_counter()
                    embeddings.append(encoders.encode_inputs(inputs))
                    report.encoder_seconds += time.perf_counter() - t1
                    report.encoder_batches += 1
                ingest.commit(plan, job.chunk, job.tracks, embeddings, report)
        except EXPECTED_ERRORS as e:
            video_failed(plan, e, report, ingest.store)
        finally:
            ingest.done(plan)
    if report.added:
        ingest.store.persist_index()
    report.seconds = time.perf_counter() - t0
    return report
