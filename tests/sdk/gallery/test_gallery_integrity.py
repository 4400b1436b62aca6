"""A gallery is evidence: concurrent ingests never share a track id, failed writes and truncated videos
are never marked done, frame times come from the decoder, read-only media can be searched, and temp
files of dead writers are cleaned. Real onnxruntime, SQLite, usearch and OpenCV throughout."""

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from sen_infer import Gallery, GalleryError, Retriever
from sen_infer.engine.encoders import Encoders
from sen_infer.vision.decode import frame_times
from videos import distinct_copy, looped_avi

from helpers import ROOT, run_cli  # noqa: E402
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}


def _cli(*args):
    return run_cli(*args, env=ENV)


def _tracks_by_source(db: Path) -> dict:
    with sqlite3.connect(db) as conn:
        out = {}
        for source, track in conn.execute("SELECT source, track FROM crops WHERE track IS NOT NULL"):
            out.setdefault(source, set()).add(track)
        return out


def _assert_no_shared_track(db: Path) -> dict:
    """{source: its track ids}, after asserting that no track id belongs to two sources."""
    tracks = _tracks_by_source(db)
    owners = {}
    for source, ids in tracks.items():
        for t in ids:
            assert t not in owners, f"track {t} shared by {owners[t]} and {source}"
            owners[t] = source
    return tracks


def _video_copies(video: Path, root: Path, n: int) -> list[Path]:
    """n re-encoded copies of both cameras under distinct paths: distinct sources with the same people
    (a byte copy would be one recording under two names)."""
    return [distinct_copy(video / f"{cam}.mp4", root / f"copy{i}" / f"{cam}.mp4", mark=i)
            for i in range(n) for cam in ("cam1", "cam2")]


def test_concurrent_ingests_never_share_a_track_id(engine, video, tmp_path):
    """3 threads (each its own Gallery object on one dir) and 1 process ingest 4 copies of the videos
    at once; every track id belongs to exactly one source and the rows add up to what each reported."""
    srcs = _video_copies(video, tmp_path, 4)
    g = tmp_path / "g"
    Retriever(engine, gallery=g).gallery.close()  # create it
    enc = Encoders(engine, "onnx-cpu")
    reports, errors = [], []

    def ingest(paths):
        try:
            gallery = Gallery.open(g, encoders=enc)
            for p in paths:
                reports.append(gallery.add_video(p, camera=p.parent.name))
        except BaseException as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    proc = subprocess.Popen([sys.executable, "-m", "sen_infer", "ingest", "--engine", str(engine), "--gallery",
                             str(g), "--quiet", "--json", *map(str, srcs[6:])], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    threads = [threading.Thread(target=ingest, args=(srcs[i * 2 : i * 2 + 2],)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    out, err = proc.communicate(timeout=600)
    assert not errors, errors
    assert proc.returncode == 0, err
    import json

    by_process = json.loads(out)["added"]
    tracks = _assert_no_shared_track(g / "gallery.sqlite")
    assert len(tracks) == 8
    with sqlite3.connect(g / "gallery.sqlite") as conn:
        rows = conn.execute("SELECT count(*) FROM crops").fetchone()[0]
    assert rows == sum(r.added for r in reports) + by_process
    # one hit per track: every stored track is reachable through the default collapsed query
    r = Retriever(engine, gallery=g)
    hits = r.query("a person", k=rows)
    assert len({h.track for h in hits}) == len(hits) == sum(map(len, tracks.values()))


def test_truncated_video_is_reported_incomplete_and_not_marked_done(engine, video, tmp_path):
    import cv2

    # an AVI announces its frame count up front (an mp4 from OpenCV's writer keeps it at the end, so a
    # cut mp4 does not open at all); cut it like a copy interrupted half way
    cap = cv2.VideoCapture(str(video / "cam1.mp4"))
    frames = []
    while (got := cap.read())[0]:
        frames.append(got[1])
    h, w = frames[0].shape[:2]
    full = tmp_path / "full.avi"
    writer = cv2.VideoWriter(str(full), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.55)])
    r = Retriever(engine, gallery=tmp_path / "g")
    rep = r.gallery.add_video(cut, camera="cam1")
    assert str(cut) in rep.incomplete, (rep.incomplete, rep.reasons)
    assert rep.incomplete[str(cut)].startswith("decoded ") and rep.incomplete[str(cut)].endswith(" of 80 frames")
    assert not r.gallery.source_done(str(cut.resolve()))
    # not done: a rerun looks at the frame decoding stopped (a seek, not a decode); the file unchanged and
    # nothing there, it is recorded complete, adding nothing twice, and the next run skips it
    again = r.gallery.add_video(cut, camera="cam1")
    assert again.added == 0 and not again.incomplete and len(r.gallery) == rep.added
    assert any("recorded as complete" in n for n in again.notes), again.notes
    assert r.gallery.source_done(str(cut.resolve()))
    assert r.gallery.add_video(cut, camera="cam1").skipped_existing == 1
    # the rest of the copy arriving later is read from where decoding ended, nothing twice
    shutil.copy(full, cut)
    grown = r.gallery.add_video(cut, camera="cam1")
    assert grown.frames == 80 and not grown.incomplete and len(r.gallery) == rep.added + grown.added


def _make_read_only(path: Path) -> None:
    if os.geteuid() != 0:
        for p in [path, *path.rglob("*")]:
            p.chmod(0o555 if p.is_dir() else 0o444)
        return
    r = subprocess.run(["chattr", "-R", "+i", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot make files read-only for root here (chattr: {r.stderr.decode().strip()})")


def _undo_read_only(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-R", "-i", str(path)], capture_output=True)
    for p in [path, *path.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


def test_unwritable_crop_folder_fails_the_video_and_commits_nothing(engine, video, tmp_path):
    g = tmp_path / "g"
    r = _cli("ingest", "--engine", engine, "--gallery", g, "--quiet", video / "cam1.mp4")
    assert r.returncode == 0, r.stderr
    crops = g / "crops"
    _make_read_only(crops)
    try:
        r = _cli("ingest", "--engine", engine, "--gallery", g, "--quiet", "--json", video / "cam2.mp4")
    finally:
        _undo_read_only(crops)
    assert r.returncode == 1, r.stderr
    import json

    out = json.loads(r.stdout)
    assert out["added"] == 0 and list(out["failed"]) == [str(video / "cam2.mp4")]
    assert "cannot write crop" in out["failed"][str(video / "cam2.mp4")]
    with sqlite3.connect(g / "gallery.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM sources WHERE source LIKE '%cam2.mp4'").fetchone()[0] == 0
    r = _cli("ingest", "--engine", engine, "--gallery", g, "--quiet", "--json", video / "cam2.mp4")
    assert r.returncode == 0 and json.loads(r.stdout)["added"] > 0  # writable again: the rerun repairs it
    with sqlite3.connect(g / "gallery.sqlite") as conn:
        for (path,) in conn.execute("SELECT crop_path FROM crops"):
            assert Path(path).is_file()  # every row's picture exists


def test_read_only_gallery_answers_queries_and_refuses_writes(engine, video, tmp_path):
    g = tmp_path / "g"
    assert _cli("ingest", "--engine", engine, "--gallery", g, "--quiet", video / "cam1.mp4").returncode == 0
    (g / "index.usearch").unlink()  # force an index rebuild on open: it must happen in memory
    before = sorted(p.name for p in g.iterdir())
    _make_read_only(g)
    try:
        q = _cli("query", "--engine", engine, "--gallery", g, "a person", "--json")
        w = _cli("ingest", "--engine", engine, "--gallery", g, "--quiet", video / "cam2.mp4")
    finally:
        _undo_read_only(g)
    assert q.returncode == 0, q.stderr
    import json

    assert len(json.loads(q.stdout)["hits"]) > 0
    assert w.returncode == 2 and "read-only" in w.stderr and len(w.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in g.iterdir()) == before  # nothing was written


def test_frame_times_follow_the_decoder_not_the_stated_rate():
    notes = []
    # a "50 fps" container whose frames are 40 ms apart (seen on real footage): 25 fps in truth
    times = frame_times([1000.0 + 40.0 * i for i in range(100)], 50.0, notes)
    assert times[0] == 0.0 and times[-1] == pytest.approx(3.96)
    assert len(notes) == 1 and "states 50 fps" in notes[0] and "25 fps" in notes[0]
    notes = []
    times = frame_times([0.0] * 10, 10.0, notes)  # a decoder that reports no positions
    assert times[-1] == pytest.approx(0.9) and "frame / 10 fps" in notes[0]
    notes = []
    assert frame_times([100.0 * i for i in range(10)], 10.0, notes)[-1] == pytest.approx(0.9) and not notes


def test_video_timestamps_are_the_decoders(engine, video, tmp_path):
    r = Retriever(engine, gallery=tmp_path / "g")
    rep = r.gallery.add_video(video / "cam1.mp4", start_time=500.0)
    assert rep.added > 0 and not rep.notes
    rows = r.gallery.rows(r.gallery.keys())
    for row in rows.values():
        assert row.timestamp == pytest.approx(500.0 + row.frame / 10.0, abs=1e-6)
        assert row.camera == "cam1.mp4"  # the file name: cam1.avi would be another camera


def test_two_gallery_objects_in_one_process_and_stale_temps(engine, synth_learn, tmp_path):
    images = [str(p) for p in sorted((synth_learn / "imgs").rglob("*.jpg"))[:40]]
    g = tmp_path / "g"
    enc = Encoders(engine, "onnx-cpu")
    Gallery.open(g, encoders=enc).add_images(images[:2])
    dead = 2 ** 22 + 12345  # above the default pid_max of 4,194,304: no such process
    stale = g / f".index.usearch.{dead}.1.2.tmp"
    stale.write_bytes(b"x" * 1000)
    mine = g / f".index.usearch.{os.getpid()}.1.2.tmp"  # a live writer's temp is not touched
    mine.write_bytes(b"y")
    a, b = Gallery.open(g, encoders=enc), Gallery.open(g, encoders=enc)
    errors, reports = [], []

    def run(gallery, chunk):
        try:
            for i in range(0, len(chunk), 3):
                reports.append(gallery.add_images(chunk[i : i + 3]))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(a, images[2:21])),
               threading.Thread(target=run, args=(b, images[21:]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert sum(r.added for r in reports) == 38 and len(Gallery.open(g, encoders=enc)) == 40
    assert not stale.exists() and mine.exists()
    assert not [p for p in g.glob(".*.tmp") if p != mine]


def test_add_images_takes_folders(engine, synth_learn, tmp_path):
    folder = tmp_path / "in" / "deep"
    folder.mkdir(parents=True)
    for p in sorted((synth_learn / "imgs").rglob("*.jpg"))[:5]:
        shutil.copy(p, folder / p.name)
    (folder / "notes.txt").write_text("not an image")
    rep = Retriever(engine, gallery=tmp_path / "g").gallery.add_images([tmp_path / "in"])
    assert rep.added == 5 and not rep.unreadable


def test_read_only_open_refuses_a_pending_wal_it_cannot_read(engine, synth_learn, tmp_path):
    g = tmp_path / "g"
    r = Retriever(engine, gallery=g)
    r.gallery.add_images([str(p) for p in sorted((synth_learn / "imgs").rglob("*.jpg"))[:3]])
    keep = sqlite3.connect(g / "gallery.sqlite")  # a reader holding the WAL open keeps it un-checkpointed
    keep.execute("PRAGMA wal_autocheckpoint=0")
    keep.execute("SELECT count(*) FROM crops").fetchone()
    snapshot = tmp_path / "copy"
    shutil.copytree(g, snapshot, ignore=shutil.ignore_patterns("*-shm"))
    keep.close()
    r.gallery.close()
    if not (snapshot / "gallery.sqlite-wal").is_file() or (snapshot / "gallery.sqlite-wal").stat().st_size == 0:
        pytest.skip("SQLite checkpointed the WAL before the copy")
    _make_read_only(snapshot)
    try:
        with pytest.raises(GalleryError, match="pending gallery.sqlite-wal"):
            Gallery.open(snapshot, encoders=r.encoders, create=False)
    finally:
        _undo_read_only(snapshot)


def test_info_check_finds_a_damaged_page_and_a_damaged_row(engine, synth_learn, tmp_path):
    import json

    g = tmp_path / "g"
    images = [str(p) for p in sorted((synth_learn / "imgs").rglob("*.jpg"))[:30]]
    Retriever(engine, gallery=g).gallery.add_images(images)
    r = _cli("info", "--engine", engine, "--gallery", g, "--check", "--json")
    assert r.returncode == 0, r.stderr
    check = json.loads(r.stdout)["check"]
    assert check["ok"] and check["rows"] == check["index_size"] == 30 and check["max_vector_difference"] < 1e-2
    with sqlite3.connect(g / "gallery.sqlite") as conn:
        conn.execute("UPDATE crops SET embedding = x'00' WHERE id = 7")
    r = _cli("info", "--engine", engine, "--gallery", g, "--check")
    assert r.returncode == 1 and "damaged embedding: keys 7" in r.stdout, r.stdout
    with sqlite3.connect(g / "gallery.sqlite") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    with open(g / "gallery.sqlite", "r+b") as f:  # a bad sector in the middle of the file
        f.seek(page * (pages // 2))
        f.write(bytes(range(256)) * (page // 256))
    r = _cli("info", "--engine", engine, "--gallery", g, "--check")
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr
    assert ("sqlite:" in r.stdout) or r.stderr.startswith("error: "), (r.stdout, r.stderr)


def _avi(video_dir: Path, out: Path, frames: int, camera: str = "cam1") -> Path:
    """The first `frames` frames of a synthetic camera as an MJPG AVI (a format that can be read while
    it grows, unlike an mp4 whose index is written at the end)."""
    import cv2

    cap = cv2.VideoCapture(str(video_dir / f"{camera}.mp4"))
    writer = None
    for _ in range(frames):
        ok, frame = cap.read()
        assert ok
        if writer is None:
            h, w = frame.shape[:2]
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
        writer.write(frame)
    writer.release()
    return out


def test_grown_recording_is_resumed_and_replaced_one_is_a_new_source(engine, video, tmp_path):
    rec = tmp_path / "rec.avi"
    r = Retriever(engine, gallery=tmp_path / "g")
    first = r.gallery.add_video(_avi(video, rec, 40), camera="cam1")
    assert first.frames == 40 and not first.incomplete and r.gallery.source_done(str(rec.resolve()))
    _avi(video, rec, 80)  # the recorder wrote 40 more frames
    grown = r.gallery.add_video(rec, camera="cam1")
    assert grown.frames == 80 and grown.added > 0 and not grown.reasons
    rows = r.gallery.rows(r.gallery.keys())
    new = sorted(rows)[-grown.added:]
    assert all(rows[k].frame >= 40 for k in new)  # only the new footage was tracked
    assert len({(row.frame, row.bbox) for row in rows.values()}) == len(rows)  # no person stored twice
    assert r.gallery.add_video(rec, camera="cam1").skipped_existing == 1  # nothing more to do

    old = set(rows)
    _avi(video, rec, 60, camera="cam2")  # another recording copied over the same path
    replaced = r.gallery.add_video(rec, camera="cam1")
    assert replaced.added > 0 and any("content changed" in n for n in replaced.notes), replaced
    rows = r.gallery.rows(r.gallery.keys())
    fresh = set(rows) - old
    assert old <= set(rows) and all(rows[k].superseded for k in old)  # kept as evidence, marked
    (new_key,) = {rows[k].source for k in fresh}  # one new source, keyed "path#<content fingerprint>"
    assert new_key.startswith(f"{rec.resolve()}#") and not any(rows[k].superseded for k in fresh)
    assert not {rows[k].track for k in old} & {rows[k].track for k in fresh}
    assert all(Path(rows[k].crop_path).is_file() for k in rows)
    hits = r.query("a person walking", k=100, per_track=False)
    assert {h.key for h in hits} == fresh  # queries leave superseded rows out...
    hits = r.query("a person walking", k=100, per_track=False, superseded=True)
    assert {h.key for h in hits} == set(rows) and {h.key for h in hits if h.superseded} == old  # ...unless asked
    assert r.gallery.add_video(rec, camera="cam1").skipped_existing == 1
    assert r.gallery.stats()["superseded_sources"] == 1


def test_replaced_image_is_a_new_source_and_rows_keep_their_picture(engine, synth_learn, tmp_path):
    images = sorted((Path(synth_learn) / "imgs").rglob("*.jpg"))[:2]
    photo = tmp_path / "in" / "photo.jpg"
    photo.parent.mkdir()
    shutil.copy(images[0], photo)
    original = photo.read_bytes()
    g = Gallery.open(tmp_path / "g", engine)
    assert g.add_images([photo]).added == 1
    assert g.add_images([photo]).skipped_existing == 1
    shutil.copy(images[1], photo)  # same path, another picture
    rep = g.add_images([photo])
    assert rep.added == 1 and any("content changed" in n for n in rep.notes)
    rows = sorted(g.rows(g.keys()).values(), key=lambda row: row.key)
    assert [row.superseded for row in rows] == [True, False]
    assert Path(rows[0].crop_path).read_bytes() == original  # the picture that was embedded, byte for byte
    assert Path(rows[1].crop_path).read_bytes() == images[1].read_bytes()
    photo.unlink()  # the user's file may go away: the gallery's copy stays
    assert all(Path(row.crop_path).is_file() for row in rows)


def test_images_of_an_older_gallery_are_recognised_or_superseded(engine, synth_learn, tmp_path):
    """Images ingested before content fingerprints (schema 1) had no source record: the migration gives
    them one, an unchanged file is recognised by its embedding, a changed one becomes a new source."""
    images = sorted((Path(synth_learn) / "imgs").rglob("*.jpg"))[:3]
    folder = tmp_path / "in"
    folder.mkdir()
    for i, img in enumerate(images[:2]):
        shutil.copy(img, folder / f"p{i}.jpg")
    g = Gallery.open(tmp_path / "g", engine)
    assert g.add_images([folder]).added == 2
    g.close()
    with sqlite3.connect(tmp_path / "g" / "gallery.sqlite") as conn:  # as the older version left it
        conn.execute("DELETE FROM sources")
        conn.execute("UPDATE crops SET crop_path = source")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    shutil.copy(images[2], folder / "p1.jpg")  # one file replaced since
    g = Gallery.open(tmp_path / "g", engine)
    rep = g.add_images([folder])
    assert (rep.added, rep.skipped_existing) == (1, 1), rep
    rows = sorted(g.rows(g.keys()).values(), key=lambda r: r.key)
    assert [(Path(r.source).name.split("#")[0], r.superseded) for r in rows] == [
        ("p0.jpg", False), ("p1.jpg", True), ("p1.jpg", False)]
    assert Path(rows[2].crop_path).read_bytes() == images[2].read_bytes()
    assert g.add_images([folder]).skipped_existing == 2


KILLED_INGEST = """
import os, signal, sys
from sen_infer import Retriever
r = Retriever(sys.argv[1], gallery=sys.argv[2])
seen = [0]
def progress(n):
    seen[0] += n
    if seen[0] == int(sys.argv[4]):
        os.kill(os.getpid(), signal.SIGKILL)  # dies mid-chunk, as a power cut would
r.gallery.add_video(sys.argv[3], camera="cam1", chunk_seconds=2.0, progress=progress)
"""


def test_long_video_commits_in_chunks_and_a_kill_loses_at_most_one(engine, video, tmp_path):
    g = tmp_path / "g"
    src = video / "cam1.mp4"  # 80 frames at 10 fps: chunks of 20 frames
    whole = Retriever(engine, gallery=tmp_path / "whole").gallery.add_video(src, camera="cam1", chunk_seconds=2.0)
    for kill_at in (55, 79):
        shutil.rmtree(g, ignore_errors=True)
        p = subprocess.run([sys.executable, "-c", KILLED_INGEST, str(engine), str(g), str(src), str(kill_at)],
                           cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
        assert p.returncode == -9, p.stderr
        with sqlite3.connect(g / "gallery.sqlite") as conn:
            resume = conn.execute("SELECT resume_frame FROM sources").fetchone()[0]
            stored = conn.execute("SELECT count(*) FROM crops").fetchone()[0]
            assert resume == (kill_at // 20) * 20  # every chunk finished before the kill is committed
            assert conn.execute("SELECT count(*) FROM crops WHERE frame >= ?", (resume,)).fetchone()[0] == 0
        r = Retriever(engine, gallery=g)
        rest = r.gallery.add_video(src, camera="cam1", chunk_seconds=2.0)
        assert r.gallery.source_done(str(src.resolve()))
        assert stored + rest.added == whole.added  # resumed: the same rows as one uninterrupted run
        with sqlite3.connect(g / "gallery.sqlite") as conn:
            assert conn.execute("SELECT count(DISTINCT track) FROM crops").fetchone()[0] == whole.added
        r.gallery.close()


def test_repeated_kills_on_a_long_video_lose_no_committed_chunk(engine, video, tmp_path):
    """The 20-kill test of image ingest, for a long video: killed again and again mid-chunk (8 kills at
    seeded random points), the committed rows never shrink and never repeat, the resume point only moves
    forward, and the run that finally completes holds exactly the rows of an uninterrupted ingest."""
    import random

    src = looped_avi(video, tmp_path / "long.avi", 4)  # 320 frames, 16 chunks of 20
    whole = Retriever(engine, gallery=tmp_path / "whole").gallery.add_video(src, camera="cam1", chunk_seconds=2.0)
    g, rng = tmp_path / "g", random.Random(12)
    resume, stored = 0, 0
    for _ in range(8):
        kill_at = resume + rng.randint(1, 60)  # progress counts from frame 0: a point in this run's first 3 chunks
        p = subprocess.run([sys.executable, "-c", KILLED_INGEST, str(engine), str(g), str(src), str(kill_at)],
                           cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
        if p.returncode == 0:
            break  # too little was left to reach the kill point
        assert p.returncode == -9, p.stderr
        with sqlite3.connect(g / "gallery.sqlite") as conn:
            now = conn.execute("SELECT resume_frame FROM sources").fetchone()[0]
            rows = conn.execute("SELECT count(*) FROM crops").fetchone()[0]
            unique = conn.execute("SELECT count(*) FROM (SELECT DISTINCT frame, x, y, w, h FROM crops)").fetchone()[0]
        assert now is not None and now >= resume and rows >= stored and unique == rows
        resume, stored = now, rows
    assert resume > 100  # the kills did land over the whole recording, not only at its start
    r = Retriever(engine, gallery=g)
    rest = r.gallery.add_video(src, camera="cam1", chunk_seconds=2.0)
    assert r.gallery.source_done(str(src.resolve()))
    assert stored + rest.added == whole.added
    r.gallery.close()


STRESS_ROUNDS = int(os.environ.get("SEN_STRESS_ROUNDS", "1"))  # the closing-note measurement runs 10


@pytest.mark.parametrize("round_", range(STRESS_ROUNDS))
def test_stress_threads_processes_and_queries(engine, video, synth_learn, tmp_path, round_):
    """3 ingest threads + 2 ingest processes over different and overlapping videos and image folders,
    with 4 query threads running meanwhile. No track id is shared by two sources, the rows are exactly
    what the ingests reported adding, and the per-track query returns one hit per stored track."""
    import json

    g = tmp_path / "g"
    vids = _video_copies(video, tmp_path, 3)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in sorted((synth_learn / "imgs").rglob("*.jpg"))[:12]:
        shutil.copy(p, folder / p.name)
    Retriever(engine, gallery=g).gallery.close()
    # each ingester gets its own videos plus one shared with another, and two share the image folder
    plans = [[vids[0], vids[1]], [vids[2], vids[1], folder], [vids[3], vids[4]],  # threads
             [vids[5], vids[4]], [folder, vids[0]]]  # processes
    enc = Encoders(engine, "onnx-cpu")
    added, errors, done = [], [], threading.Event()

    def ingest(items):
        try:
            gallery = Gallery.open(g, encoders=enc)
            for item in items:
                rep = gallery.add_images([item]) if item.is_dir() else gallery.add_video(item, chunk_seconds=3.0)
                added.append(rep.added)
                assert not rep.failed and not rep.unreadable, rep
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def query():
        try:
            r = Retriever(engine, gallery=g, backend="onnx-cpu")
            for _ in range(200):  # bounded in count...
                if done.wait(0.05):  # ...and in time: stops when the ingests are done
                    return
                hits = r.query("a person walking", k=20)
                tracks = [h.track for h in hits if h.track is not None]
                assert len(tracks) == len(set(tracks)), tracks
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    procs = [subprocess.Popen([sys.executable, "-m", "sen_infer", "ingest", "--engine", str(engine), "--gallery",
                               str(g), "--quiet", "--json", "--chunk-seconds", "3", *map(str, plan)], cwd=ROOT,
                              env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for plan in plans[3:]]
    workers = [threading.Thread(target=ingest, args=(plan,)) for plan in plans[:3]]
    readers = [threading.Thread(target=query) for _ in range(4)]
    for t in workers + readers:
        t.start()
    for t in workers:  # bounds far above the work (a few minutes on 2 loaded cores); a stuck one is named
        t.join(timeout=900)
    assert not any(t.is_alive() for t in workers), "an ingest thread did not finish within 900 s"
    outs = [p.communicate(timeout=900) for p in procs]
    done.set()
    for t in readers:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in readers), "a query thread did not stop within 120 s"
    assert not errors, errors
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        added.append(json.loads(out)["added"])
    tracks = _assert_no_shared_track(g / "gallery.sqlite")
    assert len(tracks) == 6  # every video, once
    with sqlite3.connect(g / "gallery.sqlite") as conn:
        rows = conn.execute("SELECT count(*) FROM crops").fetchone()[0]
        images = conn.execute("SELECT count(*) FROM crops WHERE frame = -1").fetchone()[0]
    assert rows == sum(added) and images == 12
    hits = Retriever(engine, gallery=g).query("a person", k=rows)
    assert len([h for h in hits if h.track is not None]) == sum(map(len, tracks.values()))


def test_tune_index_from_the_cli_stores_the_width_and_refuses_bad_input(engine, synth_learn, tmp_path):
    import json

    g = tmp_path / "g"
    images = [str(p) for p in sorted((synth_learn / "imgs").rglob("*.jpg"))[:40]]
    Retriever(engine, gallery=g).gallery.add_images(images)
    queries = tmp_path / "queries.txt"
    queries.write_text("a man in a red shirt\n\na woman with a black backpack\na person in blue jeans\n")
    r = _cli("tune-index", "--engine", engine, "--gallery", g, "--queries", queries, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["queries"] == 3 and out["query_source"] == "given" and out["reached"]
    with sqlite3.connect(g / "gallery.sqlite") as conn:
        params = json.loads(conn.execute("SELECT value FROM meta WHERE key='index_params'").fetchone()[0])
    assert params["expansion_search"] == out["chosen"]
    info = json.loads(_cli("info", "--engine", engine, "--gallery", g, "--json").stdout)
    assert info["index"]["params"]["expansion_search"] == out["chosen"]
    for bad, message in ((tmp_path / "missing.txt", "cannot read queries file"), (tmp_path / "empty.txt", "no query")):
        if bad.name == "empty.txt":
            bad.write_text("\n \n")
        r = _cli("tune-index", "--engine", engine, "--gallery", g, "--queries", bad)
        assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = _cli("tune-index", "--engine", engine, "--gallery", tmp_path / "nothing")
    assert r.returncode == 2 and "no gallery" in r.stderr


def test_bad_decoder_positions_are_interpolated_not_a_reason_to_drop_the_good_ones():
    """A '50 fps' recording whose 341 frames are 40 ms apart and whose last frame's position reads 0 (as
    real recordings do) spans 13.6 s, not the 6.8 s the stated rate gives; a garbage spike and missing
    (NaN) positions inside are interpolated. Compared in float64: exact up to interpolation rounding."""
    positions = [40.0 * i for i in range(341)]
    positions[-1] = 0.0
    positions[100] = 9e9  # garbage
    positions[200] = float("nan")
    notes = []
    times = frame_times(positions, 50.0, notes)
    np.testing.assert_allclose(times, 0.04 * np.arange(341), atol=1e-9)
    assert any("3 of 341 decoder frame times" in n for n in notes), notes
    assert any("states 50 fps" in n for n in notes), notes


def test_a_chunk_without_positions_continues_the_clock_of_the_one_before():
    """Chunked ingest: a later chunk whose decoder reports nothing usable goes on at the measured rate
    from where the previous chunk ended, never back to frame / stated fps (which ran backwards)."""
    notes = []
    first = frame_times([40.0 * i for i in range(100)], 50.0, notes)  # frames 0-99, 25 fps in truth
    later = frame_times([0.0] * 50, 50.0, notes, first=100, origin_ms=0.0, before=(99, float(first[-1]), 0.04))
    assert np.all(np.diff(np.concatenate([first, later])) > 0)
    np.testing.assert_allclose(later, 0.04 * np.arange(100, 150), atol=1e-9)
