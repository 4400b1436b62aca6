"""The vector store alone (no model, no ONNX): add_embeddings, search, rows, remove, the migration of
schema-1 galleries, and concurrent searches served in batches. Real SQLite and usearch throughout."""

import sqlite3
import threading

import numpy as np
import pytest

from sen_infer import GalleryError, Row, VectorStore
from sen_infer.store.ann import IndexParams

DIM = 32
FP = "f" * 64


def _vectors(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _rows(n, start=0, source="s", tracks=None):
    return [Row(f"{source}{i // 4}", f"cam{i % 3}", i, float(i), (0, 0, 8, 16),
                None if tracks is None else tracks[i - start]) for i in range(start, start + n)]


def test_add_search_rows_and_validation(tmp_path):
    store = VectorStore.open(tmp_path / "g", FP, DIM)
    vecs = _vectors(40)
    assert store.add_embeddings(vecs, _rows(40)) == (40, 0)
    assert store.add_embeddings(vecs, _rows(40)) == (0, 40)  # unique on (source, frame, bbox)
    hits = store.search(vecs[7], k=3, per_track=False)
    assert hits[0].frame == 7 and hits[0].score == pytest.approx(1.0, abs=1e-3)  # float16 storage
    assert hits[0] == Row("s1", "cam1", 7, 7.0, (0, 0, 8, 16), None, None, key=hits[0].key, score=hits[0].score)
    assert all(h.camera == "cam2" for h in store.search(vecs[0], k=10, camera="cam2", per_track=False))
    with pytest.raises(GalleryError, match=r"\[2, 32\]"):
        store.add_embeddings(vecs[:3], _rows(2))
    with pytest.raises(GalleryError, match="finite"):
        store.add_embeddings(np.full((1, DIM), np.nan, np.float32), _rows(1, 100))
    with pytest.raises(GalleryError, match="32 values"):
        store.nearest(np.ones(DIM + 1))
    assert len(store) == 40


def test_remove_is_logged_seen_by_other_readers_and_keys_never_reused(tmp_path):
    store = VectorStore.open(tmp_path / "g", FP, DIM, exact_max=0, filtered_exact_max=0)  # the graph path
    other = VectorStore.open(tmp_path / "g", FP, DIM)  # another reader (as another process would be)
    vecs = _vectors(60, 1)
    store.add_embeddings(vecs, _rows(60))
    assert len(other) == 60
    gone = [k for k in store.keys()][:10]
    assert store.remove(gone + [999_999]) == 10  # unknown keys are ignored
    for s in (store, other):
        assert len(s) == 50 and not set(gone) & set(s.keys()) and not set(gone) & set(s.rows(gone))
        assert not {h.key for h in s.search(vecs[3], k=60, per_track=False)} & set(gone)
    with sqlite3.connect(tmp_path / "g" / "gallery.sqlite") as conn:
        logged = [k for (k,) in conn.execute("SELECT key FROM removed ORDER BY key")]
    assert logged == sorted(gone)
    store.add_embeddings(_vectors(1, 2), _rows(1, 500))
    assert max(store.keys()) == 61  # a removed key is never handed out again
    reopened = VectorStore.open(tmp_path / "g", FP, DIM)
    check = reopened.check()
    assert check["ok"], check["problems"]
    assert len(reopened) == 51


def test_local_tracks_are_made_gallery_wide_and_caller_tracks_are_respected(tmp_path):
    store = VectorStore.open(tmp_path / "g", FP, DIM)
    store.add_embeddings(_vectors(2), _rows(2, 0, "given", tracks=[40, 41]))  # tracks chosen by the caller
    store.add_embeddings(_vectors(3), _rows(3, 10, "a", tracks=[1, 2, 3]), local_tracks=True)
    store.add_embeddings(_vectors(3), _rows(3, 20, "b", tracks=[1, 2, 3]), local_tracks=True)
    rows = store.rows(store.keys()).values()
    assert sorted(r.track for r in rows) == [40, 41, 42, 43, 44, 45, 46, 47]


SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE crops (id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, camera TEXT, frame INTEGER NOT NULL,
    timestamp REAL, x INTEGER NOT NULL, y INTEGER NOT NULL, w INTEGER NOT NULL, h INTEGER NOT NULL, track INTEGER,
    crop_path TEXT, embedding BLOB NOT NULL, UNIQUE (source, frame, x, y, w, h));
CREATE INDEX crops_camera ON crops (camera);
CREATE TABLE sources (source TEXT PRIMARY KEY, kind TEXT NOT NULL, rows INTEGER NOT NULL, finished REAL NOT NULL);
"""


def test_schema_1_gallery_is_read_without_writing_and_migrated_on_first_write(tmp_path):
    """Galleries written before schema 2 could hold one track id in two sources (concurrent ingests):
    the first write renumbers them so that each track belongs to one source, and adds the new columns."""
    g = tmp_path / "old"
    g.mkdir()
    db = g / "gallery.sqlite"
    vecs = _vectors(6, 3).astype(np.float16)
    with sqlite3.connect(db) as conn:
        conn.executescript(SCHEMA_1)
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [("fingerprint", FP), ("embed_dim", str(DIM)),
                                                            ("schema", "1")])
        for i, (source, track) in enumerate([("v1", 1), ("v1", 2), ("v2", 1), ("v2", 2), ("v2", 3), ("v3", 1)]):
            conn.execute("INSERT INTO crops (source, frame, x, y, w, h, track, embedding) VALUES (?, ?, 0, 0, 8, 8, "
                         "?, ?)", (source, i, track, vecs[i].tobytes()))
        conn.executemany("INSERT INTO sources VALUES (?, 'video', 2, 0)", [("v1",), ("v2",), ("v3",)])
    reader = VectorStore.open(g, FP, DIM)
    assert len(reader) == 6 and reader.search(vecs[0].astype(np.float32), k=1)[0].frame == 0
    with sqlite3.connect(db) as conn:  # opening and searching did not migrate (only a write does)
        assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == ("1",)
        assert len(conn.execute("PRAGMA table_info(sources)").fetchall()) == 4
    writer = VectorStore.open(g, FP, DIM)
    writer.add_embeddings(_vectors(1, 4), [Row("v4", frame=0, track=1)], local_tracks=True)
    rows = writer.rows(writer.keys()).values()
    owners = {}
    for r in rows:
        owners.setdefault(r.track, set()).add(r.source)
    assert all(len(s) == 1 for s in owners.values()), owners
    assert {r.track for r in rows if r.source == "v1"} == {1, 2}  # the first owner keeps its ids
    assert len(owners) == 7  # 2 + 3 + 1 old tracks, 1 new
    # the reader that was open before the migration sees the renumbered tracks too
    per_track = reader.search(vecs[0].astype(np.float32), k=10)
    assert len(per_track) == 7
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == ("2",)


@pytest.mark.parametrize("exact_max", [10_000, 0], ids=["exact", "graph"])
def test_concurrent_searches_equal_sequential_ones(tmp_path, exact_max):
    """Queries from many threads are served together (one matrix product or one batched graph search);
    each thread must get exactly the answer it would have got alone."""
    store = VectorStore.open(tmp_path / "g", FP, DIM, exact_max=exact_max, filtered_exact_max=0)
    store.add_embeddings(_vectors(2000, 5), _rows(2000))
    queries = _vectors(48, 6)
    filters = [{}, {"camera": "cam1"}, {"since": 500.0}, {"per_track": False}]
    want = [store.nearest(q, k=7, **filters[i % 4]) for i, q in enumerate(queries)]
    got, errors = [None] * len(queries), []

    def worker(t):
        try:
            for i in range(t, len(queries), 6):
                got[i] = store.nearest(queries[i], k=7, **filters[i % 4])
        except Exception as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads)
    assert got == want


def test_a_superseded_source_takes_no_more_rows_and_first_commits_do_not_mix_content(tmp_path):
    from sen_infer import SourceConflict
    from sen_infer.store import SourceRecord

    store = VectorStore.open(tmp_path / "g", FP, DIM)
    store.add_embeddings(_vectors(2), _rows(2, 0, "P"), SourceRecord("P0", "video", path="P", head="h1", first=True,
                                                                     resume_frame=2))
    store.add_embeddings(_vectors(1, 1), _rows(1, 10, "Q"),
                         SourceRecord("Q0", "video", path="P", head="h2", supersedes="P0", first=True))
    assert store.source("P")["source"] == "Q0"
    # the older ingest of P0 goes on with its next chunk: refused, nothing of it stored, P0 stays superseded
    with pytest.raises(SourceConflict, match="superseded"):
        store.add_embeddings(_vectors(1, 2), _rows(1, 20, "P"), SourceRecord("P0", "video", path="P", head="h1"))
    assert len(store) == 3 and store.source("P")["source"] == "Q0"
    assert {h.frame for h in store.search(_vectors(1, 1)[0], k=10, per_track=False)} == {10}
    assert len(store.search(_vectors(1, 1)[0], k=10, per_track=False, superseded=True)) == 3
    # two ingests of one new path with different content at once: the second first commit is refused
    store.add_embeddings(_vectors(1, 3), _rows(1, 30, "R"), SourceRecord("R", "image", head="a", first=True))
    with pytest.raises(SourceConflict, match="different content"):
        store.add_embeddings(_vectors(1, 4), _rows(1, 40, "R"), SourceRecord("R", "image", head="b", first=True))
    assert store.add_embeddings(_vectors(1, 3), _rows(1, 30, "R"), SourceRecord("R", "image", head="a",
                                                                               first=True)) == (0, 1)
    assert store.new_source_key("R", "sha1:b") != store.new_source_key("R", "sha1:c") != "R"


def test_batched_search_errors_reach_every_waiting_thread():
    from sen_infer.store.search import Batcher as _Batcher

    batcher, started, results = _Batcher(), threading.Barrier(4), []

    def compute(queries):
        raise ValueError("boom")

    def worker():
        started.wait()
        try:
            batcher.run("g", np.zeros(3), compute)
        except GalleryError as e:
            results.append(str(e))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads) and results == ["search failed: boom"] * 4


# ---- the index at scale: mapped on open, only new rows re-indexed after a crash, tuned per gallery ------
CRASH = """
import sys
import numpy as np
from sen_infer import Row, VectorStore
store = VectorStore.open(sys.argv[1], "f" * 64, 32, exact_max=0)
v = np.random.default_rng(9).standard_normal((30, 32)).astype(np.float32)
store.add_embeddings(v, [Row("late", "cam9", i, 1000.0 + i, (0, 0, 8, 16)) for i in range(30)])
import os
os._exit(0)  # killed after the commit, before the index was saved
"""


def _graph_store(path, **kw):
    return VectorStore.open(path, FP, DIM, exact_max=0, filtered_exact_max=0, **kw)


def test_saved_index_is_mapped_and_a_crash_reindexes_only_the_unsaved_rows(tmp_path):
    import subprocess
    import sys

    store = _graph_store(tmp_path / "g")
    vecs = _vectors(200, 3)
    store.add_embeddings(vecs, _rows(200))
    store.persist_index()
    reopened = _graph_store(tmp_path / "g")
    assert reopened.opened == {"how": "mapped", "rows_added": 0, "rows": 200}
    assert reopened.stats()["index"]["mapped_rows"] == 200 and reopened.stats()["index"]["unsaved_rows"] == 0
    r = subprocess.run([sys.executable, "-c", CRASH, str(tmp_path / "g")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    after = _graph_store(tmp_path / "g")
    # the last good index is mapped and only the 30 rows committed after it are indexed: no rebuild
    assert after.opened == {"how": "mapped", "rows_added": 30, "rows": 230}
    assert after.check()["ok"], after.check()["problems"]
    late = np.random.default_rng(9).standard_normal((30, 32)).astype(np.float32)
    assert after.search(late[4], k=1, per_track=False)[0].source == "late"
    # the graph is approximate and usearch builds it in several threads (not the same graph every run):
    # a saved row is served when it is among the top 10 of a 230-row graph; k=1 missed once in ~10 runs
    assert 17 in [h.frame for h in after.search(vecs[17], k=10, per_track=False) if h.source != "late"]
    key17 = next(k for k, row in after.rows(after.keys()).items() if row.frame == 17 and row.source != "late")
    np.testing.assert_allclose(after.vectors([key17])[0], vecs[17] / np.linalg.norm(vecs[17]), atol=2e-3)  # f16
    assert {h.camera for h in after.search(late[4], k=5, camera="cam9", per_track=False)} == {"cam9"}


def test_index_renamed_without_its_sidecar_and_rows_removed_since_the_save(tmp_path):
    store = _graph_store(tmp_path / "g")
    vecs = _vectors(120, 4)
    store.add_embeddings(vecs, _rows(120))
    store.persist_index()
    keys = store.keys()
    gone = keys[:5]
    other = _graph_store(tmp_path / "g")  # holds the mapped file while the first removes rows
    assert store.remove(gone) == 5
    (tmp_path / "g" / "index.json").unlink()  # a crash between the index's rename and the sidecar's
    again = _graph_store(tmp_path / "g")
    assert again.opened["how"] == "rows_added" and again.opened["rows"] == 115
    for s in (again, other):
        found = {h.key for h in s.search(vecs[2], k=120, per_track=False)}
        assert len(s) == 115 and not found & set(gone) and len(found) > 0
        assert all(s.search(vecs[i], k=1, per_track=False)[0].key == keys[i] for i in (5, 50, 119))
    assert again.check()["ok"] and other.check()["ok"]
    (tmp_path / "g" / "index.usearch").write_bytes(b"not an index")
    rebuilt = _graph_store(tmp_path / "g")
    assert rebuilt.opened["how"] == "rebuilt" and len(rebuilt) == 115 and rebuilt.check()["ok"]


def test_no_second_copy_of_the_vectors_beside_the_index(tmp_path):
    store = _graph_store(tmp_path / "g")
    store.add_embeddings(_vectors(300, 5), _rows(300))
    store.persist_index()
    reopened = _graph_store(tmp_path / "g")
    reopened.search(_vectors(1, 6)[0], k=5)
    held = [name for name, value in vars(reopened).items()
            if isinstance(value, np.ndarray) and value.ndim == 2 and value.shape[0] >= 300]
    assert held == []  # vectors live in the mapped index only (a small, exactly searched store keeps a matrix)
    v = _vectors(300, 5)
    key = reopened.keys()[10]
    got = reopened.embedding(key)
    want = (v[10] / np.linalg.norm(v[10])).astype(np.float16).astype(np.float64)
    # the index keeps the float16 the table keeps: equal to float16 rounding (2**-11 relative)
    assert np.abs(got.astype(np.float64) - want).max() <= 2.0 ** -11


def test_tune_index_reaches_the_target_and_is_stored_in_the_gallery(tmp_path):
    # usearch builds the graph with several threads, so the graph varies from run to run, and its float16
    # distances round otherwise than the exact reference does, so a near-tie at 10th place can go either
    # way: measured over 40 builds, recall@10 here is 0.98-1.0 even at width 1024, and a target of 0.99
    # (whose 95 % lower bound over 400 results needs all 400 found) failed in 14 of 25 builds. The target
    # is 0.9: recall 0.98 has a lower bound of 0.963; what is tested is choosing and storing a width.
    store = _graph_store(tmp_path / "g", index_params=IndexParams(connectivity=16, expansion_add=128,
                                                                   expansion_search=16))
    rng = np.random.default_rng(7)
    data = rng.standard_normal((300, DIM)).astype(np.float32)  # spread out: no near-ties at float16
    store.add_embeddings(data, _rows(300))
    queries = data[:40] + 0.05 * rng.standard_normal((40, DIM)).astype(np.float32)
    # 300 rows searched 64 wide or more: the graph visits (nearly) all of them
    report = store.tune_index(target=0.9, queries=queries)
    assert report["reached"] and report["measured"][-1]["lower_95"] >= 0.9
    assert report["chosen"] == report["measured"][-1]["expansion_search"]
    # a target no width can reach with 95 % confidence: every width tried, the widest kept, said so
    hard = store.tune_index(target=1.0, queries=queries)
    assert not hard["reached"] and hard["chosen"] == 1024 and len(hard["measured"]) == 9
    report = store.tune_index(target=0.9, queries=queries)
    reopened = _graph_store(tmp_path / "g")
    assert reopened.index_params == IndexParams(connectivity=16, expansion_add=128, expansion_search=report["chosen"])
    with sqlite3.connect(tmp_path / "g" / "gallery.sqlite") as conn:
        stored = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    assert '"chosen"' in stored["index_tuning"]
    with pytest.raises(GalleryError, match="connectivity"):
        IndexParams(connectivity=0)


def test_an_embedding_changed_in_the_table_after_the_save_is_rechecked_on_open(tmp_path):
    store = _graph_store(tmp_path / "g")
    vecs = _vectors(200, 8)
    store.add_embeddings(vecs, _rows(200))
    store.persist_index()
    keys = store.keys()
    replacement = _vectors(1, 9)[0]
    with sqlite3.connect(tmp_path / "g" / "gallery.sqlite") as conn:  # not through our code: logged by a trigger
        conn.execute("UPDATE crops SET embedding=? WHERE id=?",
                     ((replacement / np.linalg.norm(replacement)).astype(np.float16).tobytes(), keys[3]))
        conn.execute("UPDATE crops SET embedding=x'00' WHERE id=?", (keys[5],))
    with pytest.warns(UserWarning, match=f"damaged embedding.*keys {keys[5]}"):
        again = _graph_store(tmp_path / "g")
    assert again.opened["how"] == "mapped" and again.damaged == [keys[5]] and len(again) == 199
    assert again.search(replacement, k=1, per_track=False)[0].key == keys[3]  # re-indexed with the new vector
    assert keys[5] not in {h.key for h in again.search(vecs[5], k=20, per_track=False)}
    assert not again.check()["ok"]  # the damaged row is reported, and kept: it is evidence
    with sqlite3.connect(tmp_path / "g" / "gallery.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM crops").fetchone()[0] == 200


def test_a_reader_maps_the_writers_newer_index_instead_of_holding_its_rows_in_ram(tmp_path):
    writer = _graph_store(tmp_path / "g")
    vecs = _vectors(450, 10)
    writer.add_embeddings(vecs[:100], _rows(100))
    writer.persist_index()
    reader = _graph_store(tmp_path / "g")
    reader.remap_delta = 100  # (20,000 by default)
    writer.add_embeddings(vecs[100:400], _rows(300, 100))
    assert len(reader) == 400 and reader.stats()["index"]["unsaved_rows"] == 300  # held in RAM until...
    writer.persist_index()  # ...the writer saves a file covering them
    writer.add_embeddings(vecs[400:], _rows(50, 400))
    assert len(reader) == 450
    index = reader.stats()["index"]
    assert index["mapped_rows"] == 400 and index["unsaved_rows"] == 50
    keys = reader.keys()
    # rows in the mapped file (0, 150, 399) and in RAM (420) are served, each with its own vector. The graph is
    # approximate and built on several threads (not the same graph every run): a row must be among the top 10
    # of its own vector, not the top 1, which missed once in a fresh-clone run (as in the test above)
    for i in (0, 150, 399, 420):
        assert keys[i] in [h.key for h in reader.search(vecs[i], k=10, per_track=False)], i
        np.testing.assert_allclose(reader.vectors([keys[i]])[0], vecs[i] / np.linalg.norm(vecs[i]), atol=2e-3)  # f16
    assert reader.check()["ok"]
