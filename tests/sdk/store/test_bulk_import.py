"""`VectorStore.bulk_import`: many batches, the graph built in RAM with usearch's batch add and saved once;
every committed row survives a crash in the middle. Real SQLite and usearch; no model."""

import subprocess
import sys

import numpy as np

from sen_infer import Row, VectorStore

DIM = 32
FP = "b" * 64
BATCH = 1000


def _rows(n, start=0):
    return [Row(f"s{i // 100}", f"cam{i % 4}", i, float(i), (0, 0, 8, 16), i // 4) for i in range(start, start + n)]


def _vectors(n, seed):
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _open(path):
    return VectorStore.open(path, FP, DIM, exact_max=0, filtered_exact_max=0)


def test_batches_are_committed_one_by_one_and_the_index_is_saved_once_at_the_end(tmp_path):
    store = _open(tmp_path / "g")
    vecs = _vectors(3 * BATCH, 1)
    with store.bulk_import():
        for b in range(3):
            added, _ = store.add_embeddings(vecs[b * BATCH:(b + 1) * BATCH], _rows(BATCH, b * BATCH))
            assert added == BATCH
            assert not (tmp_path / "g" / "index.usearch").exists()  # nothing saved inside the block
            assert len(store) == (b + 1) * BATCH  # yet every committed row is searchable at once
            assert store.search(vecs[b * BATCH + 5], k=1, per_track=False)[0].frame == b * BATCH + 5
    assert (tmp_path / "g" / "index.usearch").is_file()
    again = _open(tmp_path / "g")
    assert again.opened == {"how": "mapped", "rows_added": 0, "rows": 3 * BATCH}
    assert again.check()["ok"], again.check()["problems"]
    found = [again.search(vecs[i], k=1, per_track=False)[0].frame for i in range(0, 3 * BATCH, 97)]
    # an approximate graph: each row's own vector finds that row (31 probes; a miss would show a broken graph)
    assert sum(f == i for f, i in zip(found, range(0, 3 * BATCH, 97))) >= len(found) - 1
    # a second bulk block on the saved gallery: the mapped rows and the new ones in one saved file
    with again.bulk_import():
        again.add_embeddings(_vectors(BATCH, 2), _rows(BATCH, 3 * BATCH))
    third = _open(tmp_path / "g")
    assert third.opened == {"how": "mapped", "rows_added": 0, "rows": 4 * BATCH} and third.check()["ok"]


CRASH = """
import os, sys
import numpy as np
sys.path.insert(0, sys.argv[2])
from test_bulk_import import BATCH, _open, _rows, _vectors
store = _open(sys.argv[1])
with store.bulk_import():
    for b in range(2):
        store.add_embeddings(_vectors(3 * BATCH, 1)[b * BATCH:(b + 1) * BATCH], _rows(BATCH, b * BATCH))
    os._exit(0)  # killed inside the block: two batches committed, the index never saved
"""


def test_a_crash_inside_the_block_loses_no_committed_row(tmp_path):
    from pathlib import Path

    r = subprocess.run([sys.executable, "-c", CRASH, str(tmp_path / "g"), str(Path(__file__).parent)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    store = _open(tmp_path / "g")
    assert store.opened["how"] == "rebuilt" and len(store) == 2 * BATCH
    assert store.check()["ok"], store.check()["problems"]
    vecs = _vectors(3 * BATCH, 1)
    assert store.search(vecs[1500], k=1, per_track=False)[0].frame == 1500


def test_a_cheaper_construction_width_for_the_block_only(tmp_path):
    import pytest

    from sen_infer import GalleryError

    store = _open(tmp_path / "g")
    with pytest.raises(GalleryError, match="expansion_add must be an integer from 2 to 4096"):
        with store.bulk_import(expansion_add=1):
            pass
    vecs = _vectors(BATCH, 5)
    with store.bulk_import(expansion_add=16):
        store.add_embeddings(vecs, _rows(BATCH))
        assert store.index.delta.expansion_add == 16
    again = _open(tmp_path / "g")
    assert again.check()["ok"] and again.index_params.expansion_add == 128  # the gallery's own is unchanged
    hits = [again.search(vecs[i], k=1, per_track=False)[0].frame for i in range(0, BATCH, 50)]
    assert sum(h == i for h, i in zip(hits, range(0, BATCH, 50))) >= len(hits) - 1


def _saved_count(path):
    import json

    return json.loads((path / "index.json").read_text())["count"]


def test_a_long_block_saves_at_doubling_sizes_and_another_process_maps_each_save(tmp_path):
    """checkpoint_from=BATCH: saves once BATCH rows are added, then whenever the rows since the last save
    reach the rows saved (1, 2, 4 batches), so a block killed between saves leaves at most half to add again."""
    store = _open(tmp_path / "g")
    vecs = _vectors(6 * BATCH, 3)
    saved = []
    with store.bulk_import(checkpoint_from=BATCH):
        for b in range(6):
            store.add_embeddings(vecs[b * BATCH:(b + 1) * BATCH], _rows(BATCH, b * BATCH))
            path = tmp_path / "g" / "index.json"
            saved.append(_saved_count(tmp_path / "g") if path.exists() else 0)
            if b == 4:  # a reader opened now maps the last checkpoint and adds only the rows since it
                reader = _open(tmp_path / "g")
                assert reader.opened == {"how": "mapped", "rows_added": BATCH, "rows": 5 * BATCH}
    assert saved == [BATCH, 2 * BATCH, 2 * BATCH, 4 * BATCH, 4 * BATCH, 4 * BATCH]
    again = _open(tmp_path / "g")
    assert again.opened == {"how": "mapped", "rows_added": 0, "rows": 6 * BATCH} and again.check()["ok"]
    hits = [again.search(vecs[i], k=1, per_track=False)[0].frame for i in range(0, 6 * BATCH, 211)]
    assert sum(h == i for h, i in zip(hits, range(0, 6 * BATCH, 211))) >= len(hits) - 1


KILLED = """
import os, signal, sys
sys.path.insert(0, sys.argv[2])
from test_bulk_import import BATCH, _open, _rows, _vectors
store = _open(sys.argv[1])
vecs = _vectors(7 * BATCH, 4)
with store.bulk_import(checkpoint_from=BATCH):
    for b in range(7):
        store.add_embeddings(vecs[b * BATCH:(b + 1) * BATCH], _rows(BATCH, b * BATCH))
    os.kill(os.getpid(), signal.SIGKILL)  # seven batches committed, saved at one, two and four
"""


def test_a_block_killed_after_a_checkpoint_reopens_from_it_and_loses_nothing(tmp_path):
    import signal
    from pathlib import Path

    import pytest

    from sen_infer import GalleryError

    r = subprocess.run([sys.executable, "-c", KILLED, str(tmp_path / "g"), str(Path(__file__).parent)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stderr
    store = _open(tmp_path / "g")
    # the last checkpoint (4 batches) mapped; only the 3 since are added again, and every committed row is there
    assert store.opened == {"how": "mapped", "rows_added": 3 * BATCH, "rows": 7 * BATCH}
    assert store.check()["ok"], store.check()["problems"]
    assert store.search(_vectors(7 * BATCH, 4)[6321], k=1, per_track=False)[0].frame == 6321
    with pytest.raises(GalleryError, match="checkpoint_from must be a positive integer or None"):
        with store.bulk_import(checkpoint_from=0):
            pass
