"""A recording is known by its content wherever it moves: renamed, hard-linked or copied, it is one source with
several names (no row stored twice); new footage at a path ingested before is a new source (no footage
skipped because of its path). In a single gallery and in a sharded root alike. Real OpenCV, SQLite, usearch
and onnxruntime."""

import os
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from sen_infer import Gallery, Retriever
from sen_infer.gallery.catalogue import make_sharded

from test_gallery_integrity import _avi  # noqa: E402  (the MJPG writer of the growing-file tests)

DAY1 = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC: a 6 s clip stays within that day
DAY2 = DAY1 + 86_400.0


def _open(engine, where: Path, kind: str):
    if kind == "sharded":
        make_sharded(where)
    return Retriever(engine, gallery=where).gallery


def _sources(gallery) -> set[tuple[str, int]]:
    """The distinct sources of a gallery's rows: a source key is unique within one gallery, which in a
    sharded root is one shard (a global key's high bits), so (source, shard)."""
    keys = getattr(getattr(gallery, "catalogue", None), "keys", None)
    return {(row.source, keys.split(row.key)[0] if keys else 0) for row in gallery.rows(gallery.keys()).values()}


@pytest.mark.parametrize("kind", ["single", "sharded"])
def test_one_recording_under_three_names_is_one_source_and_a_recycled_path_keeps_both_days(engine, video, tmp_path,
                                                                                          kind):
    inbox = tmp_path / "in"
    inbox.mkdir()
    rec = _avi(video, inbox / "rec.avi", 60)
    g = _open(engine, tmp_path / "g", kind)
    first = g.add_video(rec, camera="camA", start_time=DAY1)
    assert first.added > 0
    stored = g.rows(g.keys())

    renamed = inbox / "renamed.avi"
    rec.rename(renamed)  # mv
    hard = inbox / "hard link.avi"
    os.link(renamed, hard)  # ln
    copy = tmp_path / "elsewhere" / "copy.avi"
    copy.parent.mkdir()
    shutil.copy(renamed, copy)  # cp: new inode, new mtime, same bytes
    # each name arrives as a careless user would give it: the default camera (its file name) and, for the
    # copy, another day: the content decides, not the name, the camera or the clock
    for path, camera, start in [(renamed, "camA", DAY1), (hard, None, DAY1), (copy, "camB", DAY2)]:
        rep = g.add_video(path, camera=camera, start_time=start)
        assert rep.added == 0 and rep.skipped_existing == 1, (path, rep)
        assert any("another name" in n for n in rep.notes), rep.notes
    assert g.rows(g.keys()) == stored  # not one row more, none changed
    assert len(_sources(g)) == 1
    record = g.source_record(next(iter(stored.values())))
    assert record["names"] == [str(p.resolve()) for p in (rec, renamed, hard, copy)]
    assert g.stats()["aliases"] == 3
    again = g.add_video(copy, camera="camB", start_time=DAY2)  # a name seen before: no new alias...
    assert again.added == 0 and not any("another name" in n for n in again.notes)
    assert any("already in the gallery with start time" in n for n in again.notes)  # ...but the clock is said

    # the recorder reuses the first name for the next day's footage (another camera's picture)
    _avi(video, rec, 60, camera="cam2")
    day2 = g.add_video(rec, camera="camA", start_time=DAY2)
    assert day2.added > 0, day2
    rows = g.rows(g.keys())
    assert set(stored) < set(rows) and len(_sources(g)) == 2
    assert not any(row.superseded for row in rows.values())  # another day's footage replaces nothing
    days = {round((row.timestamp - DAY1) // 86_400) for row in rows.values()}
    assert days == {0, 1}
    hits = Retriever(engine, gallery=tmp_path / "g").query("a person walking", k=500, per_track=False)
    assert {h.key for h in hits} == set(rows)  # both days are searched by default


def test_a_copy_given_in_the_same_batch_is_stored_once(engine, video, tmp_path):
    """Two names of one recording in one `add_videos` call: the pipeline plans both before either commits;
    the second is an alias of the first, not a second source."""
    a = _avi(video, tmp_path / "a.avi", 40)
    b = tmp_path / "b.avi"
    shutil.copy(a, b)
    g = Gallery.open(tmp_path / "g", engine)
    rep = g.add_videos([a, b], camera="cam1", start_time=DAY1, workers=2)
    assert rep.added > 0 and rep.skipped_existing == 1, rep
    assert len(_sources(g)) == 1
    with sqlite3.connect(tmp_path / "g" / "gallery.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM aliases").fetchone()[0] == 1


class _Stop(Exception):
    pass


def test_an_interrupted_recording_is_resumed_under_its_new_name_with_its_own_clock(engine, video, tmp_path):
    """A recording moved while its ingest was cut short: the rest is read from the new name and committed
    under the same source, with the start time and camera it was first ingested with, so the rows equal
    one uninterrupted ingest."""
    rec = _avi(video, tmp_path / "rec.avi", 60)
    whole = Gallery.open(tmp_path / "whole", engine)
    whole.add_video(rec, camera="camA", start_time=DAY1, chunk_seconds=2.0)
    seen = [0]

    def stop_after_two_chunks(n):  # chunks of 20 frames: two are committed when frame 45 decodes
        seen[0] += n
        if seen[0] >= 45:
            raise _Stop

    g = Gallery.open(tmp_path / "g", engine)
    with pytest.raises(_Stop):
        g.add_video(rec, camera="camA", start_time=DAY1, chunk_seconds=2.0, progress=stop_after_two_chunks)
    part = len(g)
    assert 0 < part < len(whole) and not g.source_done(str(rec.resolve()))
    moved = tmp_path / "moved.avi"
    rec.rename(moved)
    rep = g.add_video(moved, camera=None, start_time=DAY2, chunk_seconds=2.0)  # the user's new, wrong guesses
    assert rep.added == len(whole) - part and any("another name" in n for n in rep.notes), rep

    def fields(gallery):
        return sorted((r.frame, r.bbox, r.camera, r.timestamp) for r in gallery.rows(gallery.keys()).values())

    assert fields(g) == fields(whole)
    assert len(_sources(g)) == 1 and g.source_done(str(rec.resolve()))


def test_two_ingests_of_two_copies_at_once_store_one_source(engine, video, tmp_path):
    """Two gallery objects (as two processes would) each plan one copy of a recording before either has
    committed anything; the one that commits second finds the content stored at its first commit, stores
    nothing, and records its name as an alias. Ordered with the progress hook, not left to chance."""
    a = _avi(video, tmp_path / "a.avi", 40)
    b = tmp_path / "b.avi"
    shutil.copy(a, b)
    Gallery.open(tmp_path / "g", engine).close()
    first, second = Gallery.open(tmp_path / "g", engine), Gallery.open(tmp_path / "g", engine)
    planned, go = threading.Event(), threading.Event()
    reports = []

    def hold(_frames):  # the second ingest has planned and is decoding: hold it until the first is done
        planned.set()
        assert go.wait(timeout=600)

    worker = threading.Thread(target=lambda: reports.append(second.add_video(b, camera="cam1", progress=hold)))
    worker.start()
    assert planned.wait(timeout=600)
    done = first.add_video(a, camera="cam1")
    go.set()
    worker.join(timeout=600)
    (late,) = reports
    assert done.added > 0 and late.added == 0 and late.skipped_existing == 1 and not late.failed, late
    assert any("another ingest" in n for n in late.notes), late.notes
    assert len(_sources(first)) == 1 and len(first) == done.added
    assert first.source_record(next(iter(first.rows(first.keys()).values())))["names"] == \
        [str(a.resolve()), str(b.resolve())]
