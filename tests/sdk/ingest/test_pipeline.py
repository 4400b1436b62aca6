"""The ingest pipeline (`Gallery.add_videos`, `ingest --workers N`) stores what the sequential path
stores, reports a bad video without losing the others, and keeps every committed chunk through a crash
or an interrupt, resuming where it stopped. Real onnxruntime, OpenCV, SQLite and usearch; no timing."""

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from sen_infer import Retriever
from videos import distinct_copy, looped_avi

from helpers import ROOT, run_cli  # noqa: E402
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
CHUNK = 2.0  # seconds: 20-frame chunks at 10 fps, so every video commits several times


def _rows(gallery_dir: Path) -> dict:
    """(source, frame, bbox) -> (camera, timestamp, crop file name, track rank within its source,
    float16 embedding as float64). Keys and gallery-wide track ids depend on the order in which the
    videos' chunks commit, so tracks are compared by their rank within their source."""
    with sqlite3.connect(gallery_dir / "gallery.sqlite") as conn:
        got = conn.execute("SELECT source, frame, x, y, w, h, camera, timestamp, crop_path, track, embedding "
                           "FROM crops").fetchall()
    ranks = {}
    for source in {g[0] for g in got}:
        ranks[source] = {t: i for i, t in enumerate(sorted({g[9] for g in got if g[0] == source}))}
    return {g[:6]: (g[6], g[7], Path(g[8]).name, ranks[g[0]][g[9]], np.frombuffer(g[10], np.float16).astype(np.float64))
            for g in got}


def _sources(gallery_dir: Path) -> dict:
    with sqlite3.connect(gallery_dir / "gallery.sqlite") as conn:
        return {s: (r, f) for s, r, f in conn.execute("SELECT source, resume_frame, frames FROM sources")}


def _batch_noise(engine_fp32, video) -> float:
    """The largest change of one crop's normalised fp32 embedding when it is embedded in batches of
    another size and company (1, 3, 8 and all crops at once): onnxruntime's kernels sum in an order
    that depends on the batch, so float32 results differ by rounding."""
    from sen_infer.engine.encoders import Encoders
    from sen_infer.store import normalise
    from sen_infer.vision.decode import extract_tracks

    enc = Encoders(engine_fp32, "onnx-cpu")
    m = enc.manifest
    from sen_infer.engine.preprocess import to_input

    crops = [c.crop for _, cs in extract_tracks(video / "cam1.mp4").tracks for c in cs][:24]
    x = np.stack([to_input(c, m.image_size, m.mean, m.std) for c in crops])
    ref = normalise(np.concatenate([enc._image(x[i:i + 1]) for i in range(len(x))]).astype(np.float64))
    worst = 0.0
    for size in (3, 8, len(x)):
        got = normalise(np.concatenate([enc._image(x[i:i + size]) for i in range(0, len(x), size)]).astype(np.float64))
        worst = max(worst, float(np.linalg.norm(got - ref, axis=1).max()))
    return worst


def test_pipeline_stores_the_rows_of_the_sequential_path(engine_fp32, video, tmp_path):
    """Two cameras, several chunks each: the sequential path (add_video per file) and the pipeline
    (two producers, an encoder batching 8 crops across tracks and cameras) store the same rows: same
    sources, frames, boxes, cameras, times, crop pictures, track grouping, resume points. The fp32 tower
    is used: a dynamically quantised int8 tower scales activations over the whole batch, so its
    embeddings depend on their batch-mates beyond rounding (docs/sdk.md)."""
    paths = [video / "cam1.mp4", video / "cam2.mp4"]
    seq = Retriever(engine_fp32, gallery=tmp_path / "seq", backend="onnx-cpu").gallery
    for p in paths:
        seq.add_video(p, chunk_seconds=CHUNK)
    pipe = Retriever(engine_fp32, gallery=tmp_path / "pipe", backend="onnx-cpu").gallery
    rep = pipe.add_videos(paths, workers=2, batch_size=8, chunk_seconds=CHUNK)
    assert not rep.unreadable and not rep.failed and rep.added > 0 and rep.encoder_batches > 0
    a, b = _rows(tmp_path / "seq"), _rows(tmp_path / "pipe")
    assert set(a) == set(b) and len(a) == rep.added
    assert {s for s, *_ in a} == {str(p.resolve()) for p in paths}
    for k in a:
        assert a[k][:4] == b[k][:4], k
    assert _sources(tmp_path / "seq") == _sources(tmp_path / "pipe")
    assert all(resume is None for resume, _ in _sources(tmp_path / "pipe").values())
    # Embeddings. A row is the normalised mean of <= 4 unit crop embeddings, stored as float16. Each crop's
    # embedding moves by at most `eps` (L2, measured here) between batchings; the mean moves by at most eps
    # and, as crops of one track never point in opposite directions (pairwise cosine >= 0, so the mean of
    # 4 has norm >= 1/2), its normalisation by at most 2 * eps / (1/2) = 4 eps. Each side's float16 rounding
    # adds at most half a step, 2^-12 for |x| < 1. eps is a sample, not a bound: a factor 4 of margin.
    eps = _batch_noise(engine_fp32, video)
    assert eps < 1e-4  # rounding-level: a mixed-up crop would move an embedding by ~0.1 or more
    tol = 2 * 2 ** -12 + 4 * (4 * eps)
    worst = max(float(np.abs(a[k][4] - b[k][4]).max()) for k in a)
    assert worst <= tol, (worst, tol, eps)
    seq.close()
    pipe.close()


def _cli(*args):
    return run_cli(*args, env=ENV)


def test_cli_workers_with_two_videos(engine_fp32, video, tmp_path):
    g = tmp_path / "g"
    r = _cli("ingest", "--engine", engine_fp32, "--gallery", g, "--workers", "2", "--json", "--no-link",
             video / "cam1.mp4", video / "cam2.mp4")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["videos"] == 2 and out["added"] > 0 and not out["unreadable"] and not out["failed"]
    assert "crops/s" in r.stderr and "frame" in r.stderr  # the progress bar across cameras
    sources = _sources(g)
    assert len(sources) == 2 and all(resume is None for resume, _ in sources.values())
    with sqlite3.connect(g / "gallery.sqlite") as conn:
        owners = dict(conn.execute("SELECT track, min(source) FROM crops GROUP BY track HAVING "
                                   "count(DISTINCT source) > 1").fetchall())
    assert owners == {}  # no track id shared by the two cameras
    again = _cli("ingest", "--engine", engine_fp32, "--gallery", g, "--workers", "2", "--json", "--quiet",
                 video / "cam1.mp4", video / "cam2.mp4")
    assert again.returncode == 0 and json.loads(again.stdout)["added"] == 0  # idempotent
    assert json.loads(again.stdout)["skipped_existing"] == 2
    bad = _cli("ingest", "--engine", engine_fp32, "--gallery", g, "--workers", "-1", video / "cam1.mp4")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--workers" in bad.stderr


def test_grown_and_replaced_recordings_through_the_pipeline(engine_fp32, video, tmp_path):
    """A recording that grew is resumed where it ended; one replaced by other content becomes a new
    source that supersedes the old rows (kept, marked), with track ids of its own."""
    import cv2

    def avi(out: Path, camera: str, frames: int) -> Path:
        cap = cv2.VideoCapture(str(video / f"{camera}.mp4"))
        got = [cap.read()[1] for _ in range(frames)]
        writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 10, got[0].shape[1::-1])
        for f in got:
            writer.write(f)
        writer.release()
        return out

    rec, other = tmp_path / "rec.avi", tmp_path / "other.avi"
    avi(other, "cam2", 80)
    gallery = Retriever(engine_fp32, gallery=tmp_path / "g").gallery
    first = gallery.add_videos([avi(rec, "cam1", 40), other], workers=2, chunk_seconds=CHUNK)
    assert first.added > 0 and gallery.source_done(str(rec.resolve()))
    before = set(gallery.keys())
    grown = gallery.add_videos([avi(rec, "cam1", 80), other], workers=2, chunk_seconds=CHUNK)
    assert grown.skipped_existing == 1 and grown.added > 0  # `other` is done; `rec` resumed at frame 40
    rows = gallery.rows(gallery.keys())
    assert all(rows[k].frame >= 40 for k in set(rows) - before)
    old = {k for k, r in rows.items() if r.source == str(rec.resolve())}
    avi(rec, "cam2", 60)  # other content copied over the same path
    replaced = gallery.add_videos([rec], workers=2, chunk_seconds=CHUNK)
    assert replaced.added > 0 and any("content changed" in n for n in replaced.notes)
    rows = gallery.rows(gallery.keys())
    fresh = {k for k, r in rows.items() if r.source.startswith(f"{rec.resolve()}#")}
    assert fresh and all(rows[k].superseded for k in old) and not any(rows[k].superseded for k in fresh)
    assert not {rows[k].track for k in old} & {rows[k].track for k in fresh}
    assert gallery.stats()["superseded_sources"] == 1
    gallery.close()


def _make_immutable(path: Path) -> None:
    path.mkdir(parents=True)
    if os.geteuid() != 0:
        path.chmod(0o555)
        return
    r = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot make a folder read-only for root here (chattr: {r.stderr.decode().strip()})")


def _undo_immutable(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    path.chmod(0o755)


def test_bad_videos_are_reported_and_the_others_stored(engine_fp32, video, tmp_path):
    """Among good videos: random bytes, an empty file, a missing path, and a video whose crops cannot be
    written (its crop folder is read-only). Each is reported; the good ones are stored to their end."""
    garbage, empty, missing = tmp_path / "garbage.mp4", tmp_path / "empty.mp4", tmp_path / "missing.mp4"
    garbage.write_bytes(os.urandom(5000))
    empty.write_bytes(b"")
    blocked = tmp_path / "blocked" / "cam1.mp4"
    distinct_copy(video / "cam1.mp4", blocked, mark=2)  # its own content: a byte copy would be an alias
    g = tmp_path / "g"
    gallery = Retriever(engine_fp32, gallery=g).gallery
    crop_dir = g / "crops" / hashlib.sha1(str(blocked.resolve()).encode()).hexdigest()[:16]
    _make_immutable(crop_dir)
    try:
        rep = gallery.add_videos([garbage, video / "cam1.mp4", empty, missing, blocked, video / "cam2.mp4"],
                                 workers=2, chunk_seconds=CHUNK)
    finally:
        _undo_immutable(crop_dir)
    assert sorted(rep.unreadable) == sorted(map(str, (garbage, empty, missing))), rep.reasons
    assert list(rep.failed) == [str(blocked)] and "cannot write crop" in rep.failed[str(blocked)]
    for good in ("cam1.mp4", "cam2.mp4"):
        assert gallery.source_done(str((video / good).resolve()))
    assert not gallery.source_done(str(blocked.resolve()))
    with sqlite3.connect(g / "gallery.sqlite") as conn:  # its chunks without people may have committed
        assert conn.execute("SELECT count(*) FROM crops WHERE source=?", (str(blocked.resolve()),)).fetchone()[0] == 0
    assert rep.added == len(gallery) > 0
    again = gallery.add_videos([blocked], workers=2, chunk_seconds=CHUNK)  # writable again: the rerun stores it
    assert again.added > 0 and not again.failed and gallery.source_done(str(blocked.resolve()))
    gallery.close()


KILLED = """
import os, signal, sys
from sen_infer import Retriever
r = Retriever(sys.argv[1], gallery=sys.argv[2])
seen = [0]
def progress(frames, crops):
    seen[0] += frames
    if seen[0] >= int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)  # dies with chunks in flight, as a power cut would
r.gallery.add_videos(sys.argv[4:], workers=2, chunk_seconds=2.0, progress=progress)
"""


@pytest.fixture(scope="module")
def long_videos(video, tmp_path_factory):
    out = tmp_path_factory.mktemp("long")
    return [looped_avi(video, out / f"{cam}.avi", 3, cam) for cam in ("cam1", "cam2")]  # 240 frames each


@pytest.fixture(scope="module")
def whole(engine_fp32, long_videos, tmp_path_factory):
    """The rows of an uninterrupted sequential ingest of the long videos."""
    g = tmp_path_factory.mktemp("whole") / "g"
    gallery = Retriever(engine_fp32, gallery=g).gallery
    for p in long_videos:
        gallery.add_video(p, chunk_seconds=CHUNK)
    gallery.close()
    return {k[:6] for k in _rows(g)}


def _committed_prefix_only(g: Path) -> None:
    """Every source's rows lie before its resume point (a chunk is committed whole, with its point)."""
    with sqlite3.connect(g / "gallery.sqlite") as conn:
        for source, resume in conn.execute("SELECT source, resume_frame FROM sources"):
            if resume is not None:
                assert resume % 20 == 0
                assert conn.execute("SELECT count(*) FROM crops WHERE source=? AND frame >= ?",
                                    (source, resume)).fetchone()[0] == 0


def test_a_killed_pipeline_keeps_committed_chunks_and_resumes(engine_fp32, long_videos, whole, tmp_path):
    g = tmp_path / "g"
    p = subprocess.run([sys.executable, "-c", KILLED, str(engine_fp32), str(g), "300", *map(str, long_videos)],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == -9, p.stderr
    _committed_prefix_only(g)
    before = set(_rows(g))
    assert before < whole  # something committed, not everything, nothing foreign
    gallery = Retriever(engine_fp32, gallery=g).gallery
    rest = gallery.add_videos(long_videos, workers=2, chunk_seconds=CHUNK)
    assert all(gallery.source_done(str(v.resolve())) for v in long_videos)
    assert len(before) + rest.added == len(whole) and set(_rows(g)) == whole  # resumed, nothing twice
    gallery.close()


def test_an_interrupted_pipeline_stops_its_threads_and_resumes(engine_fp32, long_videos, whole, tmp_path):
    """Ctrl-C (KeyboardInterrupt in the calling thread) stops the producers and the encoder, leaves the
    committed chunks and their resume points, and a rerun completes the same rows."""
    g = tmp_path / "g"
    gallery = Retriever(engine_fp32, gallery=g).gallery
    threads = threading.active_count()
    seen = [0]

    def progress(frames, crops):
        seen[0] += frames
        if seen[0] >= 250:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        gallery.add_videos(long_videos, workers=2, chunk_seconds=CHUNK, progress=progress)
    assert threading.active_count() == threads  # no producer or encoder left running
    _committed_prefix_only(g)
    assert set(_rows(g)) < whole
    gallery.add_videos(long_videos, workers=2, chunk_seconds=CHUNK)
    assert set(_rows(g)) == whole
    gallery.close()
