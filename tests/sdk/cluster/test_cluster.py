"""Ingest on a real local Ray cluster (2 CPUs) into a sharded gallery: the same rows as the sequential
ingest, exactly once when a worker is killed mid-video, and nothing added by a re-run."""

import os
import signal
import time
from dataclasses import replace

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the cluster extra is not installed (pip install -e '.[cluster]')")

from videos import looped_avi  # noqa: E402

from sen_infer import Retriever  # noqa: E402
from sen_infer.cluster import IngestConfig, connect, start_ingest  # noqa: E402
from sen_infer.ingest.video import VideoOptions  # noqa: E402
from sen_infer.gallery.catalogue import make_sharded  # noqa: E402

START = 1_700_000_000.0
CHUNK_S = 2.0  # short chunks: a killed video has committed some and not others


@pytest.fixture(scope="module")
def cluster():
    connect("local:2")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def footage(video, tmp_path_factory):
    """Three recordings: the two cameras' clips and a long one (the first clip played 4 times)."""
    long = looped_avi(video, tmp_path_factory.mktemp("long") / "lobby camera.avi", 4)
    return [video / "cam1.mp4", video / "cam2.mp4", long]


def ingested_in_turn(engine, root, footage):
    """A sharded root at `root` holding `footage` ingested one video after another in this process (the
    reference a Ray job must equal); returns the opened gallery."""
    make_sharded(root)
    g = Retriever(engine, gallery=root).open_gallery()
    for path in footage:
        g.add_video(path, start_time=START, chunk_seconds=CHUNK_S)
    return g


@pytest.fixture(scope="module")
def sequential(engine, footage, tmp_path_factory):
    """The reference: the same videos ingested one after another in this process into a sharded root."""
    return table(ingested_in_turn(engine, tmp_path_factory.mktemp("seq") / "root", footage))


def table(g) -> dict:
    """Every row by what it is (source, frame, box), with its camera, time and embedding."""
    rows = g.rows(g.keys())
    return {(r.source, r.frame, tuple(r.bbox)): (r.camera, round(r.timestamp, 6), g.embedding(k))
            for k, r in rows.items()}


def assert_same_rows(got: dict, want: dict) -> None:
    """Row for row. Embeddings are stored as float16 (relative step 2**-11 ≈ 5e-4 per value); the two
    ingests may run the encoder with different thread counts, a float32 difference far below that step,
    so stored values agree to within one float16 step of a unit vector's largest entries (< 1e-3)."""
    assert sorted(got) == sorted(want)
    for ident, (camera, t, emb) in want.items():
        assert got[ident][:2] == (camera, t), ident
        assert np.abs(got[ident][2] - emb).max() < 1e-3, ident


def kill_worker_of(job, path: str) -> None:
    """SIGKILL the worker process running `path` once 60 frames are decoded (a chunk or two committed);
    the wait is bounded by 600 s: Ray starting its workers and actors on a loaded machine, then ~100 frames."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        state = job.state()
        if path in state["running"] and state["frames"] >= 60:
            os.kill(state["running"][path], signal.SIGKILL)
            return
        time.sleep(0.05)
    raise AssertionError(f"the video never started: {job.state()}")


def config(engine, root) -> IngestConfig:
    return IngestConfig(str(engine), str(root), VideoOptions(start_time=START, chunk_seconds=CHUNK_S),
                        embedder_cpus=0.0)


def test_ray_ingest_equals_sequential_and_reruns_add_nothing(cluster, engine, footage, sequential, tmp_path):
    root = tmp_path / "root"
    report = start_ingest(config(engine, root), footage).wait()
    assert report.added == len(sequential) and not report.failed and not report.unreadable
    g = Retriever(engine, gallery=root).open_gallery()
    assert_same_rows(table(g), sequential)
    assert sorted(s["camera"] for s in g.catalogue.shards()) == ["cam1.mp4", "cam2.mp4", "lobby camera.avi"]

    again = start_ingest(config(engine, root), footage).wait()
    assert again.added == 0 and again.skipped_existing == len(footage)
    g.close()
    assert_same_rows(table(Retriever(engine, gallery=root).open_gallery()), sequential)


def test_one_writer_with_one_open_shard_serves_every_shard_of_a_job(cluster, engine, footage, sequential, tmp_path):
    """The writer pool at its smallest: one writer actor for the job's three shards, keeping one open at a
    time (the others saved and closed between videos). Each shard still has one writer: the same rows."""
    root = tmp_path / "root"
    job = start_ingest(replace(config(engine, root), writers=1, open_shards=1), footage)
    assert len(job.writers) == 1
    memory = ray.get(job.writers[0].rss_mb.remote())
    report = job.wait()
    assert report.added == len(sequential) and not report.failed
    assert_same_rows(table(Retriever(engine, gallery=root).open_gallery()), sequential)
    assert 0 < memory < 4096  # MB: read from /proc (its value is benchmarks.cluster's to report)


def test_a_killed_worker_s_video_is_ingested_exactly_once(cluster, engine, footage, sequential, tmp_path):
    root = tmp_path / "root"
    long = str(footage[2].resolve())
    job = start_ingest(config(engine, root), [footage[2]])
    kill_worker_of(job, long)
    report = job.wait()
    state = job.state()
    assert state["attempts"][long] >= 2  # Ray ran it again after the kill
    assert not report.failed
    g = Retriever(engine, gallery=root).open_gallery()
    want = {k: v for k, v in sequential.items() if k[0] == long}
    assert_same_rows(table(g), want)  # every row once: nothing lost, nothing twice

    again = start_ingest(config(engine, root), [footage[2]]).wait()
    assert again.added == 0


def test_cli(engine, footage, tmp_path, cluster):
    """The command line joins the running local cluster (auto) and reports in one JSON line."""
    import json
    import subprocess
    import sys

    from serving import ROOT

    root = tmp_path / "root"
    broken = tmp_path / "broken camera.mp4"
    broken.write_bytes(b"not a video")
    done = subprocess.run([sys.executable, "-m", "sen_infer.cluster", "ingest", "--address", "auto", "--engine",
                           str(engine), "--gallery", str(root), "--start-time", str(START), "--embedder-cpus",
                           "0", "--json", "--quiet", str(footage[0]), str(broken)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]  # one input was not stored: the rest was
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["added"] > 0 and out["videos"] == 1
    assert [k for k in out["unreadable"] if k.endswith("broken camera.mp4")]  # said, and no shard made for it
    from sen_infer.gallery.catalogue import Catalogue

    assert [s["camera"] for s in Catalogue(root).shards()] == ["cam1.mp4"]
    bad = subprocess.run([sys.executable, "-m", "sen_infer.cluster", "ingest", "--engine", str(tmp_path / "nope"),
                          "--gallery", str(root), str(footage[0])], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1
    nothing = subprocess.run([sys.executable, "-m", "sen_infer.cluster", "ingest", "--address", "auto", "--engine",
                              str(engine), "--gallery", str(tmp_path / "new root"), "--start-time", str(START),
                              str(broken)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert nothing.returncode == 2 and "nothing to ingest" in nothing.stderr, nothing.stderr[-2000:]
    assert len(nothing.stderr.strip().splitlines()) == 1 and not (tmp_path / "new root").exists()


def test_a_file_gone_after_routing_makes_no_shard(cluster, engine, footage, tmp_path):
    """A shard's writer makes its shard for the first video it can read: a file deleted between routing
    and its task leaves a catalogue entry without a folder (skipped by readers), never an empty shard."""
    from sen_infer.cluster.ingest import ShardWriter

    root = tmp_path / "root"
    make_sharded(root)
    writer = ShardWriter.remote(str(engine), str(root))
    got = ray.get(writer.begin.remote("shards/cam9/2023-11-14", str(tmp_path / "gone.mp4"),
                                      VideoOptions(start_time=START)))
    assert got.unreadable and "no such file" in got.reasons[str(tmp_path / "gone.mp4")]
    ray.get(writer.close.remote())
    assert not (root / "shards" / "cam9").exists()


def test_each_video_s_start_time_and_camera(tmp_path):
    import calendar

    from sen_infer.cluster.ingest import camera_of, start_time_of
    from sen_infer.errors import IngestError

    v = tmp_path / "cam7" / "rec 2026-11-30T08-15-00.mp4"
    v.parent.mkdir()
    v.write_bytes(b"x")
    at = calendar.timegm((2026, 11, 30, 8, 15, 0))  # the file names' time, read as UTC
    assert start_time_of(str(v), "name", None, 0, 25.0) == at
    assert start_time_of(str(tmp_path / "20261130_081500.mp4"), "name", None, 0, 25.0) == at
    with pytest.raises(IngestError, match="no date-time"):
        start_time_of(str(tmp_path / "lobby.mp4"), "name", None, 0, 25.0)
    with pytest.raises(IngestError, match="not a valid"):
        start_time_of(str(tmp_path / "20261399_081500.mp4"), "name", None, 0, 25.0)
    import os

    os.utime(v, (1796037300, 1796037300))
    assert start_time_of(str(v), "mtime", None, 1500, 25.0) == 1796037300 - 60.0  # ended then, after 60 s
    assert start_time_of(str(v), "option", 5.0, 0, 25.0) == 5.0
    assert camera_of(str(v), "parent", None) == "cam7" and camera_of(str(v), "name", "given") == "given"
    with pytest.raises(IngestError, match="local:N"):
        connect("local:abc")



def test_a_video_whose_retries_are_spent_is_reported_and_a_rerun_finishes_it(cluster, engine, footage,
                                                                            sequential, tmp_path):
    """With no retries left a killed video is reported as failed, the job's other videos are stored, and
    running the job again resumes it from its last committed chunk: the same rows as the sequential run."""
    from dataclasses import replace

    root = tmp_path / "root"
    long = str(footage[2].resolve())
    job = start_ingest(replace(config(engine, root), max_retries=0), [footage[2], footage[1]])
    kill_worker_of(job, long)
    report = job.wait()
    assert list(report.failed) == [long] and "Error" in report.failed[long]
    again = start_ingest(config(engine, root), [footage[2], footage[1]]).wait()
    assert not again.failed and again.added > 0
    g = Retriever(engine, gallery=root).open_gallery()
    want = {k: v for k, v in sequential.items() if k[0] in (long, str(footage[1].resolve()))}
    assert_same_rows(table(g), want)
