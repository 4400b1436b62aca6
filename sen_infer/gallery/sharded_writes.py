"""The writing half of a sharded root (`ShardedGallery` is the whole): ingest routed to the (camera, day)
shard, retention by whole days, and compaction of closed days into day graphs (`day_graph`).

Every write to a day raises the day's write counter twice, when it is routed (before any row is committed)
and when it has ended (`days.touch`); a day graph is used only while the counter is what it was when the
graph was built, so no query ever misses a row committed after it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import sen_infer.gallery.day_graph as day_graph
from sen_infer.gallery.catalogue import UNDATED, Catalogue, check_day, day_of
from sen_infer.ingest.inputs import default_camera, file_identity, missing_head, unusable_file
from sen_infer.ingest.report import IngestReport
from sen_infer.store.aliases import content_in

CLOSED_AFTER = 3600.0  # seconds without a write after which `compact` takes a day as closed


class ShardedWrites:
    """Ingest, retention and compaction of a `ShardedGallery` (which provides `root`, `catalogue`,
    `encoders`, `shard`, `shard_for`, `_lock`, `_open` and `_forget_graph`)."""

    # ---- ingest -----------------------------------------------------------------------------------
    def add_video(self, path, camera: str | None = None, start_time: float | None = None, **kw) -> IngestReport:
        """Ingest one video into the shard of its camera and the UTC day it starts.

        Args:
            path: the video. camera: its camera (default: from its name, `ingest.inputs.default_camera`).
            start_time: Unix time of its first frame; None puts it in the camera's undated shard.
            **kw: the other arguments of `Gallery.add_video`.

        Returns:
            The shard's `IngestReport`; content the root already holds under another name is recorded as an
            alias there (a note), not stored twice.

        Raises:
            VideoReadError: with a start_time, a video that cannot be opened (its length is read first).
        """
        path_text = str(Path(path).resolve())
        camera = camera if camera is not None else default_camera(path_text)
        why = unusable_file(path_text) or missing_head(path_text)
        if why is not None:  # reported; no shard is made for it
            report = IngestReport()
            report.skip(path, why)
            return report
        info = self.route(path_text, camera, start_time, video_duration(path) if start_time is not None else 0.0)
        try:
            return self.shard(info["no"], info, create=True).add_video(path, camera=camera, start_time=start_time,
                                                                       **kw)
        finally:
            self.catalogue.touch(info["day"])  # the write has ended: a graph built before it is not used

    def route(self, path: str, camera: str, start_time: float | None, seconds: float) -> dict:
        """The shard a video of `seconds` goes to (`route_many` for one video). Returns its catalogue entry."""
        return self.route_many([(path, camera, start_time, seconds)])[0]

    def route_many(self, videos) -> list[dict]:
        """The shard each video goes to, routed in one catalogue transaction, with the span its rows can take
        recorded first (before any is committed). A recording is routed by its content: content this root
        already holds, under any name, camera or start day, goes to the shard that holds it (which records
        the new name as an alias and stores nothing twice); new content goes to the shard of (`camera`, its
        UTC day), even at a path ingested before (a recorder that reuses a file name).

        Args:
            videos: (path, camera, start_time or None, seconds) tuples.

        Returns:
            The shards' catalogue entries, one per video, in order.
        """
        recordings = []
        for path, camera, start_time, seconds in videos:
            head = file_identity(path)["head"]
            span = (None, None) if start_time is None else (start_time, start_time + seconds + 1.0)
            if not self.catalogue.contents_complete:  # an older root's shards may hold it unrecorded
                shard_holding(self.catalogue, self.root, head, camera)  # records it where it is found
            recordings.append((head, camera, day_of(start_time), *span))
        return self.catalogue.route_many(recordings)

    def add_videos(self, paths, camera: str | None = None, start_time: float | None = None, workers=None,
                   batch_size=None, max_wait=None, **kw) -> IngestReport:
        """One video after another, each into its shard (the pipeline's overlap is for one gallery; on a
        cluster, `python -m sen_infer.cluster ingest` spreads videos over workers instead).
        `workers`, `batch_size` and `max_wait` are accepted for `Gallery.add_videos`'s sake and unused.

        Returns:
            The merged `IngestReport`.
        """
        report = IngestReport()
        progress = kw.pop("progress", None)  # add_videos reports (frames, crops embedded)
        per_frame = None if progress is None else (lambda n: progress(n, 0))
        for p in paths:
            report.merge(self.add_video(p, camera=camera, start_time=start_time, progress=per_frame, **kw))
        return report

    def add_images(self, items, camera: str | None = None, timestamp: float | None = None, **kw) -> IngestReport:
        """Pictures into the shard of `camera` (default "images") and the day of `timestamp`.

        Args:
            items, camera, timestamp, **kw: as `Gallery.add_images`; the rows keep `camera` as given.

        Returns:
            The shard's `IngestReport`.
        """
        info, g = self.shard_for(camera if camera is not None else "images", timestamp)
        if timestamp is not None:
            self.catalogue.widen(info["no"], timestamp, timestamp)
        try:
            return g.add_images(items, camera=camera, timestamp=timestamp, **kw)
        finally:
            self.catalogue.touch(info["day"])

    def drop_days_before(self, day: str) -> list[str]:
        """Retention: delete every dated shard of a day before `day` ("YYYY-MM-DD"), catalogue entry first
        (a search no longer sees it), then its folder. Returns the removed shards' paths.

        Raises:
            QueryError: `day` is not "YYYY-MM-DD".
        """
        check_day(day)
        gone = []
        for old_day in [d for d in self.catalogue.dated_days() if d < day]:  # the day graph first: no query uses it
            folder = self.catalogue.forget_graph(old_day)
            self._forget_graph(folder)
            if folder:
                shutil.rmtree(self.root / folder, ignore_errors=True)
                gone.append(folder)
        for s in self.catalogue.shards():
            if s["day"] != UNDATED and s["day"] < day:
                with self._lock:
                    g = self._open.pop(s["no"], None)
                if g is not None:
                    g.close()
                self.catalogue.forget(s["no"])
                shutil.rmtree(self.root / s["path"], ignore_errors=True)
                gone.append(s["path"])
        return gone

    def compact(self, days=None, closed_after: float = CLOSED_AFTER, progress=None) -> list[dict]:
        """Build day graphs: of `days` when given, else of every closed day (no write for `closed_after`
        seconds, and not today in UTC) without a current graph. Idempotent: a day whose graph is current
        is left alone. Crash-safe: a graph is used only once it is complete, checked and recorded.

        Args:
            days: "YYYY-MM-DD" days to compact now (even if written recently), or None.
            closed_after: seconds without a write that close a day (with days=None).
            progress: called with (day, rows read so far).

        Returns:
            One record per day considered: {"day", "status" ("built", "current", "open" or "written
            meanwhile"), "rows", "seconds"}.

        Raises:
            QueryError: a day that is not "YYYY-MM-DD".
        """
        for d in days or []:
            check_day(d)
        current = {g["day"] for g in self.catalogue.graphs()}
        today = day_of(time.time())
        out = []
        for d in days if days else self.catalogue.dated_days():
            if d in current:
                out.append({"day": d, "status": "current", "rows": None, "seconds": 0.0})
                continue
            writes, last = self.catalogue.day_writes(d)
            if not days and (d >= today or (last is not None and time.time() - last < closed_after)):
                out.append({"day": d, "status": "open", "rows": None, "seconds": 0.0})
                continue
            out.append(self._compact_day(d, writes, progress))
        return out

    def _compact_day(self, day: str, writes: int, progress) -> dict:
        """Build, check and record one day's graph (`compact`)."""
        t0 = time.perf_counter()
        graph = day_graph.build(self.root, day, self.catalogue.on_day(day), self.catalogue.keys,
                                self.encoders.manifest.fingerprint, self.encoders.dim, writes,
                                progress=None if progress is None else (lambda n: progress(day, n)))
        replaced = None
        # the day's shards listed again: one made since the build began must make the check fail
        if day_graph.unchanged(self.root, self.catalogue.on_day(day), graph["made"]):
            replaced = self.catalogue.register_graph(graph)
        if replaced is None:  # a write to the day since its counter was read: the shards stay in use
            shutil.rmtree(self.root / graph["path"], ignore_errors=True)
            return {"day": day, "status": "written meanwhile", "rows": graph["rows"],
                    "seconds": time.perf_counter() - t0}
        if replaced:
            self._forget_graph(replaced)
        for folder in (self.root / day_graph.DAYS).glob(f"{day}-w*"):  # the replaced one, and any a crash left
            if str(folder.relative_to(self.root)) != graph["path"]:  # between its rename and its record
                shutil.rmtree(folder, ignore_errors=True)
        return {"day": day, "status": "built", "rows": graph["rows"], "seconds": time.perf_counter() - t0}


def shard_holding(catalogue: Catalogue, root: Path, head: str, camera: str) -> dict | None:
    """The catalogue entry of the shard the content `head` was routed to, if that shard still exists; in a
    root made before contents were recorded, also a shard of `camera` that holds it."""
    no, complete = catalogue.content_shard(head)
    held = None if no is None else catalogue.numbered([no]).get(no)  # by primary key: routing reads no list
    if held is not None:
        return held
    if not complete:
        for s in catalogue.select({camera}):
            if content_in(root / s["path"], head) is not None:
                catalogue.place_content(head, s["no"])
                return s
    return None


def frame_count(path) -> tuple[int, float]:
    """(frames, fps) of a video: the container's count, or decoded to count when it states none."""
    from sen_infer.vision.decode import open_video

    cap, fps, count = open_video(str(path))
    try:
        if count <= 0:
            while cap.grab():
                count += 1
        return count, fps
    finally:
        cap.release()


def video_duration(path) -> float:
    """Seconds of footage a video holds; bounds the time span its rows can take."""
    frames, fps = frame_count(path)
    return frames / fps
