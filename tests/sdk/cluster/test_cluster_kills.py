"""A sharded Ray job whose driver is SIGKILLed at each step (after routing, once a shard's writer has opened
its shard, after a commit): after every kill every query works (unfiltered, per camera, `info --check`), and
the job run again ends with exactly the rows of an uninterrupted ingest. Each driver is its own process with
its own local Ray (2 CPUs), which dies with it."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the cluster extra is not installed (pip install -e '.[cluster]')")

from helpers import ROOT, run_cli  # noqa: E402
from videos import distinct_copy  # noqa: E402

from test_cluster import CHUNK_S, START, ingested_in_turn  # noqa: E402  (the same reference ingest)

from sen_infer import Retriever  # noqa: E402
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}

# The driver of a job, killed (SIGKILL, by itself: at an exact point of its own code) at one step:
#   route   every video routed (catalogue entries and contents written), no writer started
#   open    the first shard's writer has opened (made) its shard and planned its video, nothing committed
#   commit  a shard holds committed rows (the writers and tasks go on until the kill reaches them)
DRIVER = r"""
import os, signal, sqlite3, sys, time
from pathlib import Path
import ray
import sen_infer.cluster.ingest as cluster
from sen_infer.gallery.catalogue import Catalogue
from sen_infer.ingest.video import VideoOptions

engine, root, step, *videos = sys.argv[1:]
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
cluster.connect("local:2")
if step == "route":
    cluster.ShardWriter = type("Unstarted", (), {"remote": staticmethod(lambda *a, **k: die())})
if step == "open":
    real = cluster.ShardWriter
    def opened(*a, **k):
        w = real.remote(*a, **k)  # the first writer of the pool; every video is routed by now
        options = VideoOptions(start_time=%r, chunk_seconds=%r)
        shard = Catalogue(Path(root)).shards()[0]["path"]  # the first video's shard
        ray.get(w.begin.remote(shard, str(Path(videos[0]).resolve()), options))  # it has opened (made) it
        die()
    cluster.ShardWriter = type("Opened", (), {"remote": staticmethod(opened)})
config = cluster.IngestConfig(engine, root, VideoOptions(start_time=%r, chunk_seconds=%r), embedder_cpus=0.0)
job = cluster.start_ingest(config, videos)
deadline = time.monotonic() + 300
while time.monotonic() < deadline:  # step == "commit": the first committed row
    for db in Path(root, "shards").rglob("gallery.sqlite"):
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                if conn.execute("SELECT count(*) FROM crops").fetchone()[0]:
                    die()
        except sqlite3.Error:
            pass
    time.sleep(0.02)
sys.exit(3)
""" % (START, CHUNK_S, START, CHUNK_S)


@pytest.fixture(scope="module")
def footage(video, tmp_path_factory):
    """Three recordings of two cameras; the third is new footage of camera 1 (a re-encoded copy)."""
    d = tmp_path_factory.mktemp("footage")
    return [video / "cam1.mp4", video / "cam2.mp4", distinct_copy(video / "cam1.mp4", d / "cam1 again.mp4", 1)]


@pytest.fixture(scope="module")
def uninterrupted(engine, footage, tmp_path_factory):
    return table(ingested_in_turn(engine, tmp_path_factory.mktemp("whole") / "root", footage))


def table(g) -> dict:
    """Every row by what it is (source, frame, box), with its camera and time."""
    return {(r.source, r.frame, tuple(r.bbox)): (r.camera, round(r.timestamp, 6)) for r in g.rows(g.keys()).values()}


def end_session(sid: int) -> None:
    """Kill what is left of a killed driver's session (its Ray processes die with it on their own
    schedule, later on a loaded machine) and wait until none is left, so that no orphaned writer can
    commit while the root is checked or the job runs again. Bounded: 120 s."""
    import signal

    def members():
        out = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":  # session id; zombies are already dead
                out.append(int(stat.parent.name))
        return out

    deadline = time.monotonic() + 120
    while (left := members()) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    assert not members(), f"processes of the killed job still alive: {members()}"


def queries_work(engine, root, cameras) -> None:
    """An unfiltered query, one per camera and `info --check` all answer (rows or none), without an error."""
    r = Retriever(engine, gallery=root)
    r.query("a person walking", k=5)
    for camera in cameras:
        assert all(h.camera == camera for h in r.query("a person walking", k=5, camera=camera))
    check = run_cli("info", "--engine", str(engine), "--gallery", str(root), "--check", env=ENV)
    assert check.returncode == 0, (check.stdout, check.stderr)


@pytest.mark.parametrize("step", ["route", "open", "commit"])
def test_a_job_killed_at_each_step_leaves_a_queryable_root_and_a_rerun_completes_it(engine, footage,
                                                                                    uninterrupted, tmp_path, step):
    root = tmp_path / "root"
    t0 = time.monotonic()
    log = tmp_path / "driver.log"  # a file, not a pipe: processes of the killed job may hold it open a while
    with open(log, "wb") as out:
        p = subprocess.Popen([sys.executable, "-c", DRIVER, str(engine), str(root), step, *map(str, footage)],
                             cwd=ROOT, env=ENV, stdout=out, stderr=out, start_new_session=True)
        code = p.wait(timeout=600)
    end_session(p.pid)
    assert code == -9, (code, log.read_text(errors="replace")[-3000:])
    cameras = sorted({c for c, _ in uninterrupted.values()})
    queries_work(engine, root, cameras)
    rerun = subprocess.run([sys.executable, "-m", "sen_infer.cluster", "ingest", "--address", "local:2", "--engine",
                            str(engine), "--gallery", str(root), "--start-time", str(START), "--chunk-seconds",
                            str(CHUNK_S), "--embedder-cpus", "0", "--quiet", *map(str, footage)],
                           cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    queries_work(engine, root, cameras)
    assert table(Retriever(engine, gallery=root).open_gallery()) == uninterrupted, f"{time.monotonic() - t0:.0f} s"
