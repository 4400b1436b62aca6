"""Ingest on Ray: one task per video (decode -> detect -> track, on CPU workers), crops embedded by a
pool of actors that hold the encoders, rows committed by one writer actor per shard.

Exactly once: a shard's writer keeps each video's plan (where it resumes, under which source key) and
commits chunk by chunk with the resume point, as the local ingest does. A task whose worker dies is
retried by Ray and asks the writer for a fresh plan, which starts after the last committed chunk; the
writer runs its calls one at a time, in the order sent, so the retry's plan is made after any commit the
dead task had already sent. Re-running a whole job finds every video done and adds nothing.
"""

from __future__ import annotations

import calendar
import os
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import ray

from sen_infer.cluster.writers import OPEN_MAX, ShardWriter, writer_for
from sen_infer.errors import IngestError, SenInferError
from sen_infer.gallery.catalogue import is_sharded, make_sharded
from sen_infer.gallery.sharded import ShardedGallery, frame_count
from sen_infer.ingest.inputs import default_camera, expand_inputs, finite_time, missing_head
from sen_infer.ingest.report import IngestReport
from sen_infer.ingest.video import EXPECTED_ERRORS, VideoOptions, chunk_jobs


@dataclass
class IngestConfig:
    """What a cluster ingest runs with: the engine dir, the sharded root, the video options, and how
    much of the cluster each part takes."""
    engine: str
    gallery: str  # the sharded root (made when missing)
    options: VideoOptions = field(default_factory=VideoOptions)
    embedders: int = 1  # actors holding the encoders
    embedder_cpus: float = 1.0  # CPUs each embedder reserves (0 lets it share the tasks' CPUs)
    embedder_gpus: float | None = None  # None: 1 per embedder where the cluster has GPUs, else 0
    task_cpus: float = 1.0  # CPUs a video task reserves (decode + detect + track)
    max_retries: int = 3  # retries of a video whose worker died
    writers: int = 8  # writer actors at most: each is the one writer of the shards assigned to it
    open_shards: int = OPEN_MAX  # shards each writer keeps open
    backend: str = "auto"


def check_address(address: str) -> int | None:
    """Check an `--address` without joining anything (a head that does not answer fails within
    CONNECT_TIMEOUT_S). Returns N of "local:N" (None for another address).

    Raises:
        IngestError: a malformed address, or a head that cannot be reached.
    """
    local = address == "local" or address.startswith("local:")
    n = address.split(":", 1)[1] if local and ":" in address else None
    if n is not None and (not n.isdigit() or int(n) < 1):
        raise IngestError(f"--address {address}: write local:N with N CPUs (a whole number >= 1)")
    if not local and address != "auto":
        check_reachable(address)
    return int(n) if n is not None else None


def connect(address: str = "local", **kw) -> None:
    """Join or start Ray: "auto" (a running cluster), "local" / "local:N" (a cluster of this machine with
    N CPUs), or an address ("ray://head:10001", "head:6379").

    Raises:
        IngestError: a malformed address, or no cluster there (`check_address`).
    """
    cpus = check_address(address)
    if ray.is_initialized():
        return
    if address == "local" or address.startswith("local:"):
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, **kw)
        return
    try:
        ray.init(address=address, log_to_driver=False, **kw)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise IngestError(f"--address {address}: no Ray cluster to join ({first[:200]})") from None


CONNECT_TIMEOUT_S = 5.0  # how long a cluster's head may take to accept a connection before we give up


def check_reachable(address: str) -> None:
    """IngestError, within CONNECT_TIMEOUT_S, when `address` ("ray://host:port" or "host:port") is not a
    host and port that accepts connections: Ray's own client retries an unreachable head for minutes.

    Raises:
        IngestError: a malformed address, an unknown host, or a port nobody listens on.
    """
    import socket

    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise IngestError(f"--address {address}: write auto, local[:N], host:port or ray://host:port")
    if address.startswith("ray://"):
        import importlib.util

        if importlib.util.find_spec("grpc") is None:
            raise IngestError(f"--address {address}: a ray:// address needs Ray's client (pip install "
                              f"'ray[client]=={ray.__version__}')")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise IngestError(f"--address {address}: cannot reach {host}:{port} within {CONNECT_TIMEOUT_S:g} s "
                          f"({e.strerror or e})") from None


@ray.remote(max_restarts=3, max_task_retries=3)
class Embedder:
    """Holds the encoders; embeds the crops of a chunk's tracks (one array of inputs per track)."""

    def __init__(self, engine_dir: str, backend: str):
        from sen_infer.engine.encoders import Encoders

        self.encoders = Encoders(engine_dir, backend)

    def embed(self, inputs: list) -> list:
        """Embeddings of each track's crop inputs (one array per track)."""
        return [self.encoders.encode_inputs(x) for x in inputs]


@ray.remote(num_cpus=0)
class Progress:
    """Frames decoded across the cluster, and which worker process runs which video (for the driver)."""

    def __init__(self):
        self.frames, self.running, self.attempts = 0, {}, {}

    def start(self, path: str, pid: int) -> None:
        """A task began `path` in process `pid` (a retry counts as another attempt)."""
        self.running[path] = pid
        self.attempts[path] = self.attempts.get(path, 0) + 1

    def add(self, frames: int) -> None:
        """Count `frames` more decoded (tasks report every 50 or so)."""
        self.frames += frames

    def done(self, path: str) -> None:
        """`path` is no longer running."""
        self.running.pop(path, None)

    def state(self) -> dict:
        """{"frames": decoded so far, "running": path -> pid, "attempts": path -> tasks started}."""
        return {"frames": self.frames, "running": dict(self.running), "attempts": dict(self.attempts)}


def _slim(video, tracks: list) -> tuple:
    """A chunk as the writer needs it: each track's id, first and last observation (no crops), and its
    chosen crops; the chunk's timing. Keeps what crosses the object store small."""
    from sen_infer.vision.tracking import Track

    light = []
    for n, track, crops in tracks:
        ends = [replace(o, crop=None) for o in (track.observations[0], track.observations[-1])]
        light.append((n, Track(track.id, ends, track.last_frame), crops[:1] + [replace(c, crop=None) for c in crops[1:]]))
    return replace(video, tracks=[]), light


def _ingest_video(path: str, options: VideoOptions, engine: str, writer, shard: str, embedders: list,
                  progress) -> IngestReport:
    """One video: plan with the writer of its shard (folder `shard`), then the chunk loop here, crops
    embedded by an encoder actor and each chunk committed by the writer. Returns the video's report."""
    from sen_infer.engine.manifest import read_manifest

    progress.start.remote(path, os.getpid())
    report = IngestReport()
    got = ray.get(writer.begin.remote(shard, path, options))
    if isinstance(got, IngestReport):  # nothing to do; the writer says why
        report.merge(got)
        progress.done.remote(path)
        return report
    start_frame, _ = got
    plan = _WorkerPlan(path, start_frame)
    embedder = embedders[hash(path) % len(embedders)]
    pending = [0]

    def tick(n):
        pending[0] += n
        if pending[0] >= 50:
            progress.add.remote(pending[0])
            pending[0] = 0

    try:
        for job in chunk_jobs(plan, options, read_manifest(engine), tick):
            embeddings = ray.get(embedder.embed.remote(job.inputs)) if job.inputs else []
            slim_video, slim_tracks = _slim(job.chunk, job.tracks)
            chunk = ray.get(writer.commit.remote(shard, path, slim_video, slim_tracks, embeddings))
            chunk.notes = [n for n in chunk.notes if n not in report.notes]
            chunk.frames = 0  # a video's frames are its decoded count so far, not a sum over chunks
            report.merge(chunk)
            report.frames = job.chunk.frames
    except EXPECTED_ERRORS as e:
        report.fail(path, f"{type(e).__name__}: {e}")
    finally:
        progress.add.remote(pending[0])
    ray.get(writer.end.remote(shard, path))
    progress.done.remote(path)
    return report


@dataclass
class _WorkerPlan:
    """What the chunk loop needs of a video's plan on a worker (the writer keeps the whole plan)."""
    path_text: str
    start_frame: int


@dataclass
class ClusterJob:
    """A running ingest: `state()` while it runs, `wait()` for its report."""
    refs: dict  # ObjectRef -> path
    progress: object
    writers: list  # the job's pool of writer actors
    total_frames: int
    skipped: IngestReport = field(default_factory=IngestReport)  # inputs refused before any task ran
    started: float = field(default_factory=time.perf_counter)

    def state(self) -> dict:
        """The job's progress now (`Progress.state`): frames decoded, videos running, attempts per video."""
        return ray.get(self.progress.state.remote())

    def wait(self, bar=None) -> IngestReport:
        """Wait for every video, then save and close the shards' writers.

        Args:
            bar: a tqdm-like progress bar, updated with the frames decoded.

        Returns:
            The merged `IngestReport`; a video whose task failed for good is in `failed`, not raised.
        """
        report = IngestReport()
        report.merge(self.skipped)
        left = list(self.refs)
        shown = 0
        while left:
            ready, left = ray.wait(left, num_returns=len(left), timeout=0.5)
            for ref in ready:
                try:
                    got = ray.get(ref)
                except (ray.exceptions.RayError, SenInferError) as e:  # retries spent, or an error of ours
                    first = str(e).strip().splitlines()
                    report.fail(self.refs[ref], f"{type(e).__name__}: {first[-1] if first else e}")
                    continue
                report.merge(got)
            if bar is not None:
                frames = self.state()["frames"]
                bar.update(max(0, frames - shown))
                shown = max(shown, frames)
        for w in self.writers:
            ray.get(w.close.remote())
        report.seconds = time.perf_counter() - self.started
        return report


NAME_TIME = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})[T_ -]?(\d{2})[:.-]?(\d{2})[:.-]?(\d{2})")
START_FROM = ("option", "name", "mtime")  # where each video's start time comes from
CAMERA_FROM = ("name", "parent")  # where each video's camera name comes from


def start_time_of(path: str, how: str, given: float | None, frames: int, fps: float) -> float | None:
    """A video's first-frame time: the one given (every video the same), the first date-time in its file
    name (YYYYMMDD[T_-]HHMMSS or with separators, read as UTC), or its modification time less its
    duration (recorders close a file when its recording ends). IngestError when it cannot be had."""
    if how == "option":
        return given
    if how == "name":
        m = NAME_TIME.search(Path(path).name)
        if m is None:
            raise IngestError("no date-time (YYYYMMDD-HHMMSS) in its file name")
        try:
            return float(calendar.timegm(time.strptime("".join(m.groups()), "%Y%m%d%H%M%S")))
        except ValueError:
            raise IngestError(f"{m.group(0)!r} in its file name is not a valid date-time") from None
    if how == "mtime":
        return os.stat(path).st_mtime - frames / fps
    raise IngestError(f"start time from {how!r}: choose one of {', '.join(START_FROM)}")


def camera_of(path: str, how: str, given: str | None) -> str:
    """A video's camera: the one given (every video the same), else by `how`: "name" (its file name, see
    `default_camera`) or "parent" (its folder's name). IngestError for another `how`."""
    if given is not None:
        return given
    if how == "parent":
        return Path(path).parent.name or default_camera(path)
    if how == "name":
        return default_camera(path)
    raise IngestError(f"camera from {how!r}: choose one of {', '.join(CAMERA_FROM)}")


@dataclass
class ProbedInputs:
    """A job's inputs checked on the driver (`probe_inputs`), before Ray is asked for anything."""
    videos: list  # (path, camera, start time, frames, fps) of each video that can be opened and timed
    report: IngestReport  # the inputs that cannot (unreadable, no start time), with why


def probe_inputs(config: IngestConfig, sources: list, camera: str | None = None, start_from: str = "option",
                 camera_from: str = "name") -> ProbedInputs:
    """Expand `sources` (videos or folders of videos) and open each video for its length, camera and
    start (`start_from`: "option" (config.options.start_time for every video), "name" or "mtime" (per
    video, `start_time_of`); `camera_from`: "name" (the file name) or "parent" (its folder), unless `camera`).
    Needs no cluster.

    Returns:
        The `ProbedInputs`.

    Raises:
        IngestError: a bad `start_from`/`camera_from`, a source that does not exist, or not one video that
            can be ingested (then nothing is made).
    """
    if start_from not in START_FROM:
        raise IngestError(f"start time from {start_from!r}: choose one of {', '.join(START_FROM)}")
    if camera_from not in CAMERA_FROM:
        raise IngestError(f"camera from {camera_from!r}: choose one of {', '.join(CAMERA_FROM)}")
    missing = [str(s) for s in sources if not os.path.lexists(s)]
    if missing:  # a mistyped path: the command is refused before anything is made
        raise IngestError(f"no such file or folder: {missing[0]}"
                          + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "") + "; nothing was ingested")
    pre = IngestReport()
    _, videos = expand_inputs([str(s) for s in sources], pre)
    planned = _probe(videos, start_from, camera_from, camera, config, pre)
    if not planned:  # refused before a root, an actor or a shard is made
        why = "; ".join(f"{k}: {v}" for k, v in list(pre.reasons.items())[:3]) or "no video files among the sources"
        raise IngestError(f"nothing to ingest ({why}); nothing was ingested")
    return ProbedInputs(planned, pre)


def start_ingest(config: IngestConfig, sources, camera: str | None = None, start_from: str = "option",
                 camera_from: str = "name") -> ClusterJob:
    """Start ingesting `sources` into the sharded root; Ray must be connected (`connect`). Each video goes
    to the shard of its camera and the UTC day it starts.

    Args:
        config: the job's `IngestConfig`.
        sources: videos or folders of videos, or the `ProbedInputs` of `probe_inputs` (then the other
            arguments are not used).
        camera, start_from, camera_from: as `probe_inputs`.

    Returns:
        The running `ClusterJob`.

    Raises:
        IngestError: as `probe_inputs`.
    """
    probed = sources if isinstance(sources, ProbedInputs) else \
        probe_inputs(config, sources, camera, start_from, camera_from)
    planned, pre = probed.videos, probed.report
    root = Path(config.gallery)
    if not is_sharded(root):
        make_sharded(root)
    sharded = ShardedGallery(root, encoders=None)
    options = replace(config.options, camera=None)
    gpus = config.embedder_gpus
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    embedders = [Embedder.options(num_cpus=config.embedder_cpus, num_gpus=gpus).remote(config.engine, config.backend)
                 for _ in range(max(1, config.embedders))]
    progress = Progress.remote()
    # every video routed, in one catalogue transaction, before any writer starts
    infos = sharded.route_many([(path, cam, start, frames / fps) for path, cam, start, frames, fps in planned])
    shards = list(dict.fromkeys(info["path"] for info in infos))
    pool = [ShardWriter.remote(config.engine, str(root), config.open_shards)
            for _ in range(min(max(1, config.writers), len(shards)))]
    writers = {s: writer_for(pool, i) for i, s in enumerate(shards)}  # a shard has one writer for the job
    refs, total = {}, 0
    task = ray.remote(_ingest_video).options(num_cpus=config.task_cpus, max_retries=config.max_retries)
    for (path, cam, start, frames, _), info in zip(planned, infos):
        total += frames
        refs[task.remote(path, replace(options, camera=cam, start_time=start), config.engine, writers[info["path"]],
                         info["path"], embedders, progress)] = path
    return ClusterJob(refs, progress, pool, total, skipped=pre)


def _probe(videos: list, start_from: str, camera_from: str, camera: str | None, config: IngestConfig,
           pre: IngestReport) -> list[tuple]:
    """(path, camera, start time, frames, fps) of each video that can be opened and timed; the others are
    reported in `pre` (unreadable, or no start time) and get no shard."""
    out = []
    for video in videos:
        path = str(Path(video).resolve())
        why = missing_head(path)
        if why is not None:
            pre.skip(video, why)
            continue
        try:
            frames, fps = frame_count(path)
            start = finite_time(start_time_of(path, start_from, config.options.start_time, frames, fps),
                                "its start time")
        except SenInferError as e:
            pre.skip(video, str(e))
            continue
        out.append((path, camera_of(path, camera_from, camera), start, frames, fps))
    return out
