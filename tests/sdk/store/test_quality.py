"""Each stored crop carries its score (how surely it shows one whole person): kept with the row, shown in
hits and JSON, and a query can ask for a minimum. Rows without one (pictures, older galleries) stay."""

import json
import sqlite3

import numpy as np
import pytest

from helpers import run_cli
from sen_infer import QueryError, Retriever
from sen_infer.store import Row


def test_video_rows_carry_their_crop_score_and_queries_can_ask_for_a_minimum(engine, video, tmp_path):
    r = Retriever(engine, gallery=tmp_path / "g")
    for cam in ("cam1", "cam2"):
        r.gallery.add_video(video / f"{cam}.mp4", camera=cam, detector="mog2")
    r.gallery.add_images([np.full((96, 48, 3), 90, np.uint8)])
    hits = r.query("a person", k=100)
    scores = [h.quality for h in hits if h.frame >= 0]
    assert scores and all(0.0 <= q <= 1.0 for q in scores)
    assert [h.quality for h in hits if h.frame < 0] == [None]  # a picture has no score
    assert len(set(scores)) > 1, scores  # people at the frame's border or behind others score lower
    cut = max(scores)  # a stored value: the rows holding it stay (no rounding between table and memory)
    kept = r.query("a person", k=100, min_quality=cut)
    assert {h.key for h in kept} == {h.key for h in hits if h.quality is None or h.quality >= cut}
    assert len(kept) < len(hits)
    with pytest.raises(QueryError, match="min_quality"):
        r.query("a person", min_quality=1.5)
    # the CLI: --min-quality, the score in --json, and bad values refused in one line (exit 2)
    out = run_cli("query", "a person", "--engine", str(engine), "--gallery", str(tmp_path / "g"), "-k", "100",
                  "--min-quality", str(cut), "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)["hits"]
    assert {h["key"] for h in got} == {h.key for h in kept} and all("quality" in h for h in got)
    bad = run_cli("query", "a person", "--engine", str(engine), "--gallery", str(tmp_path / "g"),
                  "--min-quality", "2")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_a_gallery_from_before_scores_opens_keeps_its_rows_unscored_and_gains_the_column_on_write(engine,
                                                                                               tmp_path):
    r = Retriever(engine, gallery=tmp_path / "g")
    dim = r.gallery.dim
    rng = np.random.default_rng(0)
    r.gallery.store.add_embeddings(rng.normal(size=(3, dim)), [Row("a.jpg", frame=-1, bbox=(0, 0, 9, 9)),
                                                                Row("b.jpg", frame=-1, bbox=(0, 0, 9, 9)),
                                                                Row("c.jpg", frame=-1, bbox=(0, 0, 9, 9))])
    del r
    # make it a gallery of the previous layout: no quality column, no saved columns with one
    db = sqlite3.connect(tmp_path / "g" / "gallery.sqlite")
    db.execute("ALTER TABLE crops DROP COLUMN quality")
    db.commit()
    db.close()
    (tmp_path / "g" / "columns.npz").unlink(missing_ok=True)
    old = Retriever(engine, gallery=tmp_path / "g")
    q = old.gallery.embedding(old.gallery.keys()[0])
    assert [h.quality for h in old.gallery.search(q, k=10)] == [None] * 3
    assert len(old.gallery.search(q, k=10, min_quality=0.9)) == 3  # unknown scores are kept
    old.gallery.store.add_embeddings(rng.normal(size=(1, dim)), [Row("d", frame=3, bbox=(1, 2, 3, 4), quality=0.25)])
    hits = old.gallery.search(q, k=10, min_quality=0.5)
    assert len(hits) == 3 and all(h.quality is None for h in hits)
    assert sorted(h.quality for h in old.gallery.search(q, k=10) if h.quality is not None) == [0.25]
