"""Many videos at once: decode + detect + track in producer threads, embedding in one encoder thread.

Why: in `Gallery.add_video` one thread decodes, tracks and embeds in turn, so the image encoder idles
while frames decode and the decoder idles while crops embed. Here `workers` producer threads each
read one video (camera) at a time (OpenCV decoding and the background model release the GIL), one
encoder thread embeds the crops of all of them in batches that cross tracks and cameras
(onnxruntime releases the GIL), and the calling thread commits. Bounded queues keep memory bounded
whatever the number and length of the videos: a producer waits when the encoder is behind, and a
video holds at most `chunks_ahead` decoded chunks that are not yet committed.

What is stored is exactly what `add_video` stores: each video's chunks commit in order through
`VideoIngest.commit`, each with its resume point (a crash loses only uncommitted chunks and the next
ingest resumes), local track numbers become gallery-wide ids inside the committing transaction, a
replaced file supersedes its old source, and a video that cannot be read or stored is reported while
the others go on. Only the batching of crops differs, which changes embeddings by float32 rounding
(onnxruntime's kernels sum in a batch-size-dependent order) — and, for dynamically quantised int8
towers, by the activation scale that such towers compute over the whole batch.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sen_infer.errors import IngestError, SourceConflict
from sen_infer.ingest.report import IngestReport
from sen_infer.ingest.video import EXPECTED_ERRORS, VideoIngest, chunk_jobs, video_failed


def default_workers() -> int:
    """Producers when none are asked for: one per 4 cores, at least one. One producer already keeps
    about two cores busy (OpenCV decodes and runs the background model on its own thread pool), and the
    encoder wants the rest; on 2 cores a second producer made ingest slower (docs/benchmarks.md)."""
    return max(1, (os.cpu_count() or 1) // 4)


def recommended_workers() -> int:
    """What `ingest` uses when --workers is not given: 0 (one video after another, no overlap) below 4
    cores, where the producers and the encoder only compete for the same two cores (measured on 2 cores:
    the pipeline ran at 0.97x the sequential path for `small` int8, 1.03x for ViT-B/16 fp32 and 0.75-0.85x
    for ViT-B/16 static int8; docs/benchmarks.md), else `default_workers()`."""
    return 0 if (os.cpu_count() or 1) < 4 else default_workers()


@dataclass
class PipelineConfig:
    """How the pipeline is laid out. The defaults suit a small CPU box; more workers help while the
    encoder waits for crops (see docs/benchmarks.md, "Ingest pipeline")."""
    workers: int = field(default_factory=default_workers)  # videos decoded, detected and tracked at once
    batch_size: int = 32  # most crops per encoder call
    max_wait: float = 0.02  # seconds the encoder waits to fill a batch once it holds a crop
    chunks_ahead: int = 2  # chunks of one video decoded but not yet committed (bounds memory)
    queued_crops: int = 0  # crops waiting for the encoder (0: 4 x batch_size)

    def __post_init__(self):
        for name in ("workers", "batch_size", "chunks_ahead"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise IngestError(f"{name} must be an integer >= 1, not {value!r}")
        if isinstance(self.max_wait, bool) or not isinstance(self.max_wait, (int, float)) or not \
                0 <= self.max_wait < 60:
            raise IngestError(f"max_wait must be a number of seconds in [0, 60), not {self.max_wait!r}")
        if isinstance(self.queued_crops, bool) or not isinstance(self.queued_crops, int) or self.queued_crops < 0:
            raise IngestError(f"queued_crops must be an integer >= 0, not {self.queued_crops!r}")
        self.queued_crops = self.queued_crops or 4 * self.batch_size


class _Stopped(Exception):
    """Raised inside a producer's decoding loop when the ingest stops or its video was given up."""


@dataclass
class _Video:
    """One video on its way through the pipeline."""
    plan: object  # ingest.video.VideoPlan
    report: IngestReport
    slots: threading.Semaphore  # chunks decoded and not yet committed
    given_up: bool = False  # a commit failed: its later chunks are dropped, its producer stops
    started: float = field(default_factory=time.perf_counter)


@dataclass
class _Job:
    """A chunk of a video going through the encoder (or, with `end`, the end of a video), in the order
    its producer sent it. `remaining` counts the crops still to embed."""
    video: _Video
    chunk: object = None  # video.VideoTracks
    tracks: list = field(default_factory=list)  # chunk_tracks(chunk)
    embeddings: np.ndarray | None = None  # [crops, D], filled by the encoder
    remaining: int = 0
    end: bool = False
    error: BaseException | None = None  # why the video ended early (end jobs only)


_DONE = object()  # no more jobs: sent by the last producer to the encoder, then by the encoder to the writer


class _Pipeline:
    def __init__(self, videos: VideoIngest, encoders, paths: list, opts, config: PipelineConfig, progress):
        self.videos, self.encoders = videos, encoders
        self.opts, self.config, self.progress = opts, config, progress
        self.paths = iter(paths)
        self.paths_lock = threading.Lock()
        self.crops: queue.Queue = queue.Queue(config.queued_crops)  # producers -> encoder
        self.done: queue.Queue = queue.Queue()  # encoder -> writer (bounded by the videos' slots)
        self.stop = threading.Event()
        self.frames = [0] * config.workers  # frames decoded, per producer (each writes its own)
        self.embedded = 0  # crops embedded (written by the encoder only)
        self.encoder_seconds = 0.0
        self.batches = 0
        self.producers_left = config.workers
        self.added = 0  # rows committed (by the writer): the index is saved at the end when > 0
        self.count_lock = threading.Lock()

    # ---- producers: decode + detect + track -------------------------------------------------------
    def _put(self, item) -> None:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                self.crops.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _next_path(self):
        with self.paths_lock:
            return next(self.paths, None)

    def produce(self, worker: int) -> None:
        try:
            while not self.stop.is_set():
                path = self._next_path()
                if path is None:
                    return
                self._one_video(worker, path)
        except _Stopped:
            return
        finally:
            with self.count_lock:
                self.producers_left -= 1
                last = self.producers_left == 0
            if last:
                try:
                    self._put(_DONE)
                except _Stopped:
                    pass

    def _one_video(self, worker: int, path) -> None:
        report = IngestReport()
        error = None
        try:
            plan = self.videos.plan(path, self.opts, report)
        except OSError as e:  # the file went away or became unreadable between the checks
            report.skip(path, f"cannot read it ({e.strerror or e})")
            plan = None
        except BaseException as e:  # e.g. a damaged gallery: the writer raises it
            plan, error = None, e
        if plan is None:
            self._put(_Job(_Video(None, report, threading.Semaphore(0)), end=True, error=error))
            return
        video = _Video(plan, report, threading.Semaphore(self.config.chunks_ahead))

        def tick(n: int) -> None:
            self.frames[worker] += n
            if self.stop.is_set() or video.given_up:
                raise _Stopped

        try:
            for chunk_job in chunk_jobs(plan, self.opts, self.videos.manifest, tick):
                inputs = [x for per_track in chunk_job.inputs for x in per_track]
                while not video.slots.acquire(timeout=0.1):  # the writer is behind on this video
                    if self.stop.is_set():
                        raise _Stopped
                job = _Job(video, chunk_job.chunk, chunk_job.tracks,
                           np.empty((len(inputs), self.videos.store.dim), np.float32), len(inputs))
                self._put(job)
                for i, x in enumerate(inputs):
                    self._put((job, i, x))
        except _Stopped:
            if self.stop.is_set():
                raise
        except EXPECTED_ERRORS as e:
            error = e
        except BaseException as e:  # a bug, or a detector that failed: the writer raises it
            error = e
        self._put(_Job(video, end=True, error=error))

    # ---- the encoder: crops of every video, batched ----------------------------------------------
    def encode(self) -> None:
        try:
            self._encode()
        except BaseException as e:  # an engine that fails: stop everything, the writer raises it
            self.stop.set()
            self.done.put(e)

    def _encode(self) -> None:
        batch: list = []  # (job, index, input)
        pending: deque[_Job] = deque()  # jobs in arrival order, handed on in that order once embedded
        deadline = None
        encoders = self.encoders

        def flush():
            nonlocal deadline
            if batch:
                x = np.stack([item[2] for item in batch])
                t0 = time.perf_counter()
                emb = encoders.encode_inputs(x)
                self.encoder_seconds += time.perf_counter() - t0
                self.batches += 1
                self.embedded += len(batch)
                for (job, i, _), e in zip(batch, emb):
                    job.embeddings[i] = e
                    job.remaining -= 1
                batch.clear()
            deadline = None
            while pending and pending[0].remaining == 0:
                self.done.put(pending.popleft())

        while True:
            if self.stop.is_set():
                return
            timeout = 0.1 if deadline is None else max(0.0, deadline - time.perf_counter())
            try:
                item = self.crops.get(timeout=timeout)
            except queue.Empty:
                if deadline is not None:
                    flush()
                continue
            if item is _DONE:
                flush()
                self.done.put(_DONE)
                return
            if isinstance(item, _Job):
                pending.append(item)
                if item.remaining == 0 and not batch:
                    flush()  # hands it on at once when nothing before it waits for the encoder
                continue
            batch.append(item)
            if deadline is None:
                deadline = time.perf_counter() + self.config.max_wait
            if len(batch) >= self.config.batch_size:
                flush()

    # ---- the writer: commits, in the calling thread ----------------------------------------------
    def write(self, total: IngestReport) -> None:
        shown_frames = shown_crops = 0
        while True:
            try:
                item = self.done.get(timeout=0.2)
            except queue.Empty:
                item = None
            if self.progress is not None:
                frames, crops = sum(self.frames), self.embedded
                if frames != shown_frames or crops != shown_crops:
                    self.progress(frames - shown_frames, crops - shown_crops)
                    shown_frames, shown_crops = frames, crops
            if item is None:
                continue
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            self._commit(item, total)

    def _commit(self, job: _Job, total: IngestReport) -> None:
        video = job.video
        if job.end:
            if video.plan is not None:
                self.videos.done(video.plan)
            if job.error is not None and not isinstance(job.error, EXPECTED_ERRORS):
                raise job.error
            if job.error is not None and not video.given_up:
                video_failed(video.plan, job.error, video.report, self.videos.store)
            video.report.seconds = time.perf_counter() - video.started
            total.merge(video.report)
            return
        try:
            if video.given_up:
                return  # an earlier chunk failed: the sequential path would have stopped there
            spans, start = [], 0
            for _, _, crops in job.tracks:
                spans.append(job.embeddings[start:start + len(crops)])
                start += len(crops)
            try:
                before = video.report.added
                self.videos.commit(video.plan, job.chunk, job.tracks, spans, video.report)
                self.added += video.report.added - before
            except (SourceConflict, OSError) as e:
                video_failed(video.plan, e, video.report, self.videos.store)
                video.given_up = True  # its producer stops at its next frame
        finally:
            video.slots.release()


def run_pipeline(videos: VideoIngest, encoders, paths: list, opts, config: PipelineConfig,
                 progress=None) -> IngestReport:
    """Ingest `paths` (videos) into the store of `videos`, embedded by `encoders`, with `config.workers`
    producers and one encoder; returns the merged report: `seconds` is the wall time, `encoder_seconds`
    the time inside encoder calls."""
    total = IngestReport()
    t0 = time.perf_counter()
    unique, seen = [], set()
    for p in paths:  # one path twice would run two ingests of one source at once
        key = _resolved(p)
        if key in seen:
            total.skipped_existing += 1
            continue
        seen.add(key)
        unique.append(p)
    if not unique:
        return total
    config = PipelineConfig(min(config.workers, len(unique)), config.batch_size, config.max_wait,
                            config.chunks_ahead, config.queued_crops)
    pipe = _Pipeline(videos, encoders, unique, opts, config, progress)
    threads = [threading.Thread(target=pipe.produce, args=(w,), name=f"sen-ingest-decode-{w}", daemon=True)
               for w in range(config.workers)]
    threads.append(threading.Thread(target=pipe.encode, name="sen-ingest-encode", daemon=True))
    for t in threads:
        t.start()
    try:
        pipe.write(total)
    finally:
        pipe.stop.set()  # a no-op after a normal end; after an error or Ctrl-C the threads stop
        for t in threads:
            t.join()
        if pipe.added:
            videos.store.persist_index()  # also after an error or Ctrl-C: what was committed is indexed
        total.seconds = time.perf_counter() - t0
        total.encoder_seconds = pipe.encoder_seconds
        total.encoder_batches = pipe.batches
    return total


def _resolved(p) -> str:
    try:
        return str(Path(os.fsdecode(p)).resolve())
    except (OSError, ValueError):
        return os.fsdecode(p)
