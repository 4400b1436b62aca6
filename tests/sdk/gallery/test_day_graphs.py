"""Day graphs: `compact` merges a closed day's camera shards into one index that queries search instead of
them, answering as the shards answer; any write to the day sends queries back to its shards; retention
drops the graph with the day; a crash at any step of a compaction loses nothing and changes no answer.
Real SQLite, usearch and the tiny engine's encoders (for the model's fingerprint and size)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sen_infer import Row, VectorStore
from sen_infer.engine.encoders import Encoders
from sen_infer.gallery import day_graph
from sen_infer.gallery.catalogue import Catalogue, make_sharded
from sen_infer.gallery.sharded import ShardedGallery

DAY = 86_400.0
START = 1_772_668_800.0  # 2026-03-05 00:00 UTC
CAMERAS = ["north gate", "lobby", "car park", "dock"]
ROWS = 30  # per camera and day


def _fill(root: Path, encoders, days: int, seed: int = 0) -> None:
    """Rows straight into each (camera, day) shard, as a writer commits them: routed first (the catalogue
    entry, which raises the day's write counter), then the shard's own commit, then the end of the write."""
    cat = Catalogue(root)
    rng = np.random.default_rng(seed)
    for d in range(days):
        for c, camera in enumerate(CAMERAS):
            info = cat.shard_for(camera, _day(d))
            store = VectorStore.open(root / info["path"], encoders.manifest.fingerprint, encoders.dim)
            times = START + d * DAY + np.sort(rng.uniform(0, DAY - 1, ROWS))
            cat.widen(info["no"], float(times[0]), float(times[-1]))
            rows = [Row(f"rec-{camera}-{d}", camera, i, float(times[i]), (0, 0, 8, 16), i // 3) for i in range(ROWS)]
            store.add_embeddings(rng.standard_normal((ROWS, encoders.dim)).astype(np.float32), rows)
            store.persist_index()
            store.close()
            cat.touch(_day(d))


def _day(d: int) -> str:
    return f"2026-03-{5 + d:02d}"


@pytest.fixture
def root(engine, tmp_path):
    encoders = Encoders(engine)
    root = tmp_path / "root"
    make_sharded(root)
    _fill(root, encoders, days=3)
    return root, encoders


def _answers(g: ShardedGallery, queries: np.ndarray) -> list:
    """Each query's hits under the filters an operator uses: none, one camera, two, a window, per row."""
    out = []
    for q in queries:
        out.append(g.nearest(q, 10))
        out.append(g.nearest(q, 5, camera="lobby"))
        out.append(g.nearest(q, 5, camera=["dock", "north gate"], since=START + DAY, until=START + 2.5 * DAY))
        out.append(g.nearest(q, 10, per_track=False))
    return out


def _same(a: list, b: list) -> None:
    """Same keys in the same order, scores equal to float32 rounding: both are exact float32 products of the
    same float16 vectors over matrices of different sizes (a day against its camera shards), where BLAS may
    sum in another order: |difference| <= dim * 2**-24 for unit vectors."""
    for x, y in zip(a, b, strict=True):
        assert [k for k, _ in x] == [k for k, _ in y]
        assert np.allclose([s for _, s in x], [s for _, s in y], rtol=0, atol=256 * 2.0 ** -24)


def test_queries_use_the_day_graphs_and_answer_as_the_shards_did(root):
    path, encoders = root
    queries = np.random.default_rng(7).standard_normal((4, encoders.dim)).astype(np.float32)
    before = ShardedGallery(path, encoders)
    want = _answers(before, queries)
    before.nearest(queries[0], 5, camera=["dock", "north gate"], since=START + DAY, until=START + 2.5 * DAY)
    assert before.last_graphs == [] and len(before.last_searched) == 2 * 2  # two cameras on days 2 and 3
    done = before.compact(closed_after=0)
    assert [(d["day"], d["status"], d["rows"]) for d in done] == [(_day(d), "built", ROWS * 4) for d in range(3)]
    after = ShardedGallery(path, encoders)
    _same(_answers(after, queries), want)
    after.nearest(queries[0], 10)
    assert after.last_graphs == [_day(d) for d in range(3)] and after.last_searched == []  # no shard searched
    after.nearest(queries[0], 5, camera="lobby", since=START + DAY, until=START + 1.5 * DAY)
    assert after.last_graphs == [_day(1)]
    # the rows of a hit are read from their shards: the same rows, keys and tracks as before compaction
    key = want[0][0][0]
    assert after.rows([key])[key] == before.rows([key])[key]
    assert len(after) == len(before) == 3 * 4 * ROWS
    assert [d["status"] for d in after.compact(closed_after=0)] == ["current"] * 3  # idempotent
    assert sorted(p.name.split("-w")[0] for p in (path / "days").iterdir()) == [_day(d) for d in range(3)]


def test_a_write_to_a_compacted_day_sends_its_queries_back_to_the_shards(root):
    path, encoders = root
    g = ShardedGallery(path, encoders)
    g.compact(closed_after=0)
    # a new row on day 2, written as a writer writes: routed, committed, ended
    cat = Catalogue(path)
    info = cat.shard_for("lobby", _day(1))
    store = VectorStore.open(path / info["path"], encoders.manifest.fingerprint, encoders.dim)
    late = np.random.default_rng(99).standard_normal(encoders.dim).astype(np.float32)
    store.add_embeddings(late[None], [Row("late", "lobby", 0, START + DAY + 60, (0, 0, 8, 16), 900)])
    store.close()
    hits = g.nearest(late, 3)
    assert g.last_graphs == [_day(0), _day(2)] and len(g.last_searched) == 4  # day 2 from its four shards
    row = g.rows([hits[0][0]])[hits[0][0]]
    assert row.source == "late" and hits[0][1] > 0.999
    cat.touch(_day(1))  # the write ends
    assert [d["status"] for d in g.compact(closed_after=3600)] == ["current", "open", "current"]  # just written
    assert [d["status"] for d in g.compact([_day(1)])] == ["built"]
    assert g.nearest(late, 3)[0] == hits[0] and g.last_searched == []


def test_retention_drops_the_graph_with_its_day(root):
    path, encoders = root
    g = ShardedGallery(path, encoders)
    g.compact(closed_after=0)
    gone = g.drop_days_before(_day(1))
    assert any(p.startswith("days/") for p in gone) and not list((path / "days").glob(f"{_day(0)}-w*"))
    g.nearest(np.ones(encoders.dim, np.float32), 10)
    assert g.last_graphs == [_day(1), _day(2)]
    assert len(g) == 2 * 4 * ROWS


CRASH = """
import os, sys
from pathlib import Path
from sen_infer.engine.encoders import Encoders
from sen_infer.gallery import day_graph
from sen_infer.gallery.sharded import ShardedGallery
root, engine, where = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
if where == "save":  # killed while the graph's files are written, inside their temp folder
    real = day_graph.json.dumps
    day_graph.json.dumps = lambda *a, **k: os.kill(os.getpid(), 9) if "made" in a[0] else real(*a, **k)
else:  # killed after the folder's rename, before the catalogue records it
    day_graph.unchanged = lambda *a: os.kill(os.getpid(), 9)
ShardedGallery(root, Encoders(engine)).compact(closed_after=0)
"""


@pytest.mark.parametrize("where", ["save", "record"])
def test_a_compaction_killed_at_any_step_loses_nothing_and_a_rerun_completes_it(root, engine, where):
    path, encoders = root
    queries = np.random.default_rng(3).standard_normal((3, encoders.dim)).astype(np.float32)
    want = _answers(ShardedGallery(path, encoders), queries)
    r = subprocess.run([sys.executable, "-c", CRASH, str(path), str(engine), where], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == -9, r.stderr  # SIGKILL, at the chosen step
    left = ShardedGallery(path, encoders)
    _same(_answers(left, queries), want)  # the shards answer: nothing was recorded
    assert left.last_graphs == [] and Catalogue(path).graphs() == []
    assert list((path / "days").iterdir())  # the killed build left its folder behind
    assert [d["status"] for d in left.compact(closed_after=0)] == ["built"] * 3
    # one folder a day: what the killed build left (a temp folder, or a renamed one never recorded) is gone
    assert sorted(p.name.split("-w")[0] for p in (path / "days").iterdir()) == [_day(d) for d in range(3)]
    _same(_answers(ShardedGallery(path, encoders), queries), want)


def test_the_cli_compacts_and_says_what_it_did(root, engine):
    path, _ = root
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    r = subprocess.run([sys.executable, "-m", "sen_infer", "compact", "--engine", str(engine), "--gallery", str(path),
                        "--closed-after", "0"], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    assert "row/s" not in r.stderr, r.stderr  # stderr is a pipe here, as in a cron job: no progress bar drawn
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and all(re.fullmatch(rf"{_day(d)}: built, {4 * ROWS} rows in \d+\.\d s", line)
                                   for d, line in enumerate(lines)), lines
    bad = subprocess.run([sys.executable, "-m", "sen_infer", "compact", "--engine", str(engine), "--gallery",
                          str(path), "--day", "5 March"], capture_output=True, text=True, timeout=300, env=env)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: day must be YYYY-MM-DD, not '5 March'"
