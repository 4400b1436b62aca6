"""Camera filters read each camera's rows in place from the camera file written with the index
(`sen_infer.store.camera_blocks`): exact, so they must equal a brute-force scan of the table, including
rows added, removed or edited since the file was written. Real SQLite and usearch; no model."""

import sqlite3

import numpy as np
import pytest

from sen_infer import Row, VectorStore
from sen_infer.store import camera_blocks

DIM = 32
FP = "c" * 64
CAMERAS = 5


def _rows(n, start=0, source="s"):
    return [Row(f"{source}{i // 50}", f"cam{i % CAMERAS}", i, float(i), (0, 0, 8, 16), i // 4)
            for i in range(start, start + n)]


def _vectors(n, seed):
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _open(path):
    # exact_max=0: never the small-gallery matrix; filtered_exact_max=0: without the camera file, a filter
    # would go to the graph (approximate), so an exact answer here comes from the camera file
    return VectorStore.open(path, FP, DIM, exact_max=0, filtered_exact_max=0)


def _brute(path, q, k, cameras, since=None, until=None):
    """The top k (key, score) of the table's rows of `cameras`, in float64 from the stored float16 blobs."""
    with sqlite3.connect(path / "gallery.sqlite") as conn:
        rows = conn.execute("SELECT id, camera, timestamp, embedding FROM crops ORDER BY id").fetchall()
    keep = [r for r in rows if r[1] in cameras and (since is None or r[2] >= since) and (until is None or r[2] <= until)]
    vecs = np.stack([np.frombuffer(r[3], np.float16).astype(np.float64) for r in keep])
    scores = vecs @ (q.astype(np.float64) / np.linalg.norm(q))
    order = np.lexsort((np.array([r[0] for r in keep]), -scores))[:k]
    return [(int(keep[i][0]), float(scores[i])) for i in order]


def _same(got, want):
    """Keys equal, scores equal to float32 rounding of a DIM-term dot product of float16 values (the store
    scores in float32; the brute force in float64): |error| <= DIM * 2**-24 * sum|a_i b_i| <= DIM * 2**-24."""
    assert [k for k, _ in got] == [k for k, _ in want]
    assert np.allclose([s for _, s in got], [s for _, s in want], rtol=0, atol=DIM * 2.0 ** -24 + 1e-7)


@pytest.fixture
def gallery(tmp_path):
    path = tmp_path / "g"
    store = _open(path)
    store.add_embeddings(_vectors(2000, 1), _rows(2000))
    store.persist_index()
    assert (path / camera_blocks.VECTORS).is_file() and (path / camera_blocks.META).is_file()
    return path


def test_a_camera_filter_is_exact_for_one_camera_several_and_with_a_time_window(gallery):
    store = _open(gallery)
    assert store.blocks is not None and store.blocks.count(["cam2"]) == 400
    for seed in range(5):
        q = _vectors(1, 100 + seed)[0]
        _same(store.nearest(q, 10, camera="cam2", per_track=False), _brute(gallery, q, 10, {"cam2"}))
        _same(store.nearest(q, 10, camera=["cam0", "cam4"], per_track=False), _brute(gallery, q, 10, {"cam0", "cam4"}))
        _same(store.nearest(q, 7, camera="cam1", since=300.0, until=900.0, per_track=False),
              _brute(gallery, q, 7, {"cam1"}, 300.0, 900.0))
    assert store.nearest(_vectors(1, 5)[0], 10, camera="nobody") == []
    # one per track: every hit from another track, and the best of the camera first
    hits = store.nearest(_vectors(1, 7)[0], 10, camera="cam3")
    tracks = [r.track for r in store.rows([k for k, _ in hits]).values()]
    assert len(hits) == 10 and len(set(tracks)) == 10
    _same(hits[:1], _brute(gallery, _vectors(1, 7)[0], 1, {"cam3"}))


def test_rows_added_removed_and_edited_since_the_file_was_written(gallery):
    store = _open(gallery)
    late = _vectors(300, 2)
    store.add_embeddings(late, _rows(300, start=2000, source="late"))  # not saved: above the file's max key
    assert store.blocks is not None and store.blocks.max_id < max(store.keys())
    q = late[7]  # row 2007, camera cam2: the best match is a row the file does not hold
    got = store.nearest(q, 10, camera="cam2", per_track=False)
    _same(got, _brute(gallery, q, 10, {"cam2"}))
    assert store.rows([got[0][0]])[got[0][0]].source == "late40"  # row 2007
    gone = [k for k, _ in got[:3]]
    assert store.remove(gone) == 3
    after = store.nearest(q, 10, camera="cam2", per_track=False)
    assert not set(gone) & {k for k, _ in after}
    _same(after, _brute(gallery, q, 10, {"cam2"}))
    # an embedding edited in the table after the save: the file holds the old vector, so it is set aside
    key = after[0][0]
    with sqlite3.connect(gallery / "gallery.sqlite") as conn:
        conn.execute("UPDATE crops SET embedding=? WHERE id=?", (np.full(DIM, -0.17, np.float16).tobytes(), key))
    # (a filter then takes the exact scan over the index's vectors, which hold the edit)
    reread = VectorStore.open(gallery, FP, DIM, exact_max=0, filtered_exact_max=10_000)
    assert reread.blocks is None  # edits since the file was written
    _same(reread.nearest(q, 10, camera="cam2", per_track=False), _brute(gallery, q, 10, {"cam2"}))


def test_a_damaged_camera_file_is_set_aside_and_the_next_save_writes_it_again(gallery):
    (gallery / camera_blocks.VECTORS).write_bytes(b"\0" * 100)
    store = _open(gallery)
    assert store.blocks is None
    q = _vectors(1, 3)[0]
    assert [k for k, _ in store.nearest(q, 5, camera="cam0", per_track=False)]  # the graph still answers
    store.add_embeddings(_vectors(10, 4), _rows(10, start=5000, source="more"))
    store.persist_index()
    assert store.blocks is not None and _open(gallery).blocks is not None
    _same(_open(gallery).nearest(q, 10, camera="cam0", per_track=False), _brute(gallery, q, 10, {"cam0"}))


def test_the_camera_file_is_written_chunk_by_chunk_from_the_old_file_and_the_index(gallery, monkeypatch):
    """The file is copied CHUNK rows at a time (bounded memory at 10M rows): with a chunk of 7 rows, a file
    rewritten after 50 new rows holds, for every key, the vector the index holds (rows from the old file and
    rows from the index alike), camera by camera in key order."""
    monkeypatch.setattr(camera_blocks, "CHUNK", 7)
    store = _open(gallery)
    store.add_embeddings(_vectors(50, 9), _rows(50, start=2000))
    store.persist_index()
    blocks = _open(gallery).blocks
    assert blocks is not None and len(blocks.keys) == 2050
    expected = store.vectors(blocks.keys).astype(np.float16)
    assert np.array_equal(np.asarray(blocks.vectors), expected)
    for name, (a, b) in blocks.spans.items():
        assert (np.diff(blocks.keys[a:b]) > 0).all()
