"""A job's writers: a bounded pool of Ray actors, each the one writer of the shards assigned to it.

Why a pool: a writer is a Python process with the SDK loaded (about 150 MB resident, `ShardWriter.rss_mb`),
idle most of the time. One per shard meant a job over one day of 10,000 cameras held 10,000 of them. A
shard always goes to the same writer for the whole job (`writer_for`), so each shard still has exactly one
writer; a writer keeps at most `open_max` shards open and saves and closes one with no video in progress
before opening another.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import ray

from sen_infer.errors import IngestError
from sen_infer.gallery.catalogue import Catalogue
from sen_infer.ingest.inputs import unusable_file
from sen_infer.ingest.report import IngestReport
from sen_infer.ingest.video import VideoIngest, VideoOptions

OPEN_MAX = 16  # shards a writer keeps open (each holds a SQLite connection, its columns and its index map)


def writer_for(pool: list, i: int):
    """The writer of the i-th shard of a job (in the order the job first routed to them): round robin."""
    return pool[i % len(pool)]


@dataclass
class _Shard:
    """One open shard of a writer: its store, its ingest steps, and its videos in progress."""
    store: object
    videos: VideoIngest
    plans: dict = field(default_factory=dict)


@ray.remote(num_cpus=0, max_restarts=3, max_task_retries=3)
class ShardWriter:
    """One writer of a job's pool: plans videos and commits their chunks, in the order asked, for every shard
    assigned to it.

    Args:
        engine_dir: the engine dir (its manifest: the model's identity and size; a writer embeds nothing).
        root: the sharded root.
        open_max: shards kept open at once.
    """

    def __init__(self, engine_dir: str, root: str, open_max: int = OPEN_MAX):
        from sen_infer.engine.manifest import read_manifest

        self.manifest = read_manifest(engine_dir)
        self.root = Path(root)
        self.catalogue = Catalogue(self.root)
        self.open_max = max(1, int(open_max))
        self.shards: OrderedDict[str, _Shard] = OrderedDict()

    def _open(self, shard: str) -> _Shard:
        """Shard folder `shard` (relative to the root), opened (made) on first use."""
        from sen_infer.store import VectorStore

        got = self.shards.get(shard)
        if got is None:
            m = self.manifest
            store = VectorStore.open(self.root / shard, m.fingerprint, m.embed_dim, create=True)
            got = self.shards[shard] = _Shard(store, VideoIngest(store, m, store.dir / "crops"))
        self.shards.move_to_end(shard)
        self._close_idle(keep=shard)
        return got

    def _close_idle(self, keep: str | None = None) -> None:
        """Save and close the least recently used shards with no video in progress (never `keep`, the one
        being opened), down to `open_max`."""
        for name in list(self.shards):
            if len(self.shards) <= self.open_max:
                return
            s = self.shards[name]
            if not s.plans and name != keep:
                s.store.persist_index()
                s.store.close()
                del self.shards[name]

    def begin(self, shard: str, path: str, options: VideoOptions) -> tuple | IngestReport:
        """(start frame, source key) of a video to ingest into `shard`, or the `IngestReport` of one with
        nothing to do (done already, another name of stored content, unusable: said in its notes and
        reasons). A file that went away since it was routed makes no shard (an empty one would be listed
        and searched)."""
        report = IngestReport()
        why = unusable_file(path)
        if why is not None:
            report.skip(path, why)
            return report
        s = self._open(shard)
        plan = s.videos.plan(path, options, report)
        if plan is None:
            return report
        s.plans[path] = plan
        return plan.start_frame, plan.key

    def commit(self, shard: str, path: str, video, tracks: list, embeddings: list) -> IngestReport:
        """Commit one chunk of a planned video (`VideoIngest.commit`); the chunk's report.

        Raises:
            IngestError: the video was not planned here (this writer restarted since).
        """
        s = self.shards.get(shard)
        if s is None or path not in s.plans:  # this writer was restarted since the video was planned
            raise IngestError(f"{path}: its shard writer restarted mid-video; ingest it again to resume it")
        report = IngestReport()
        s.videos.commit(s.plans[path], video, tracks, embeddings, report)
        return report

    def end(self, shard: str, path: str) -> None:
        """A video is done: forget its plan, save the shard's index, end the write on its day's counter."""
        s = self.shards.get(shard)
        if s is not None:
            plan = s.plans.pop(path, None)
            if plan is not None:
                s.videos.done(plan)
            s.store.persist_index()
        self.catalogue.touch(Path(shard).name)  # shards/<camera>/<day>: a day graph built before is not used
        self._close_idle()

    def close(self) -> None:
        """Save the index of every open shard and close it."""
        for s in self.shards.values():
            s.store.persist_index()
            s.store.close()
        self.shards.clear()

    def rss_mb(self) -> float:
        """This writer's resident memory, MB (Linux /proc)."""
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")
