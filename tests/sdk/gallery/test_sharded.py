"""A sharded gallery (one ordinary gallery per camera and UTC day under a catalogue) answers exactly as
one gallery holding the same rows, and opens only the shards a filter can match."""

import shutil

import numpy as np
import pytest
from videos import distinct_copy

from sen_infer import Retriever
from sen_infer.errors import QueryError
from sen_infer.gallery.catalogue import make_sharded
from sen_infer.gallery.sharded import ShardedGallery

DAY = 86_400.0
START = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC: a 20 s clip stays within that day
QUERIES = ["a woman in a red coat carrying a black backpack", "a man in a grey hoodie and blue jeans",
           "a person in a white shirt and black trousers", "a man wearing a green t-shirt and a red cap"]


@pytest.fixture(scope="module")
def twin(engine, video, tmp_path_factory):
    """The same three recordings (two cameras on day 1, camera 1 again on day 2) in one gallery and in a
    sharded root."""
    root = tmp_path_factory.mktemp("sharded")
    day2 = distinct_copy(video / "cam1.mp4", root / "cam1 next day.mp4", mark=1)  # the same people, new footage
    jobs = [(video / "cam1.mp4", "cam1", START), (video / "cam2.mp4", "cam2", START), (day2, "cam1", START + DAY)]
    single = Retriever(engine, gallery=root / "single")
    make_sharded(root / "sharded")
    sharded = Retriever(engine, gallery=root / "sharded")
    for path, camera, t in jobs:
        single.gallery.add_video(path, camera=camera, start_time=t)
        sharded.gallery.add_video(path, camera=camera, start_time=t)
    return single, sharded, root


def identity(hit):
    return hit.source, hit.frame, tuple(hit.bbox)


def assert_same(a: list, b: list, tol: float = 3e-5) -> None:
    """Same hits with the same scores, in the same order, up to float32 rounding. Both score with float32
    products of the same float16-stored vectors, but over matrices of different sizes, where BLAS may sum
    in another order: 512 products of unit vectors differ by at most ~512 * 2**-24 ≈ 3e-5 (the
    tolerance). So rows whose scores lie within it of each other (here nearly equal: the day-2
    video is a re-encoded copy of the day-1 one) may swap places, or trade the last place, between the two."""
    assert len(a) == len(b)
    assert np.allclose([h.score for h in a], [h.score for h in b], atol=tol)
    if not a:
        return
    last = min(h.score for h in a)
    scores_b = {identity(h): h.score for h in b}
    for h in a:  # a hit clearly inside the top k of one is in the other, with its score
        if h.score > last + tol:
            assert identity(h) in scores_b and abs(scores_b[identity(h)] - h.score) < tol
    clear = [identity(h) for h in a if h.score > last + tol and
             all(abs(h.score - o.score) > tol for o in a if o is not h)]
    assert [identity(h) for h in b if identity(h) in clear] == clear


def test_sharded_answers_as_one_gallery(twin):
    single, sharded, _ = twin
    g = sharded.open_gallery()
    assert isinstance(g, ShardedGallery)
    shards = g.catalogue.shards()
    assert sorted((s["camera"], s["day"]) for s in shards) == [("cam1", "2023-11-14"), ("cam1", "2023-11-15"),
                                                               ("cam2", "2023-11-14")]
    assert len(g) == len(single.gallery) > 0
    assert g.stats()["rows"] == single.gallery.stats()["rows"]
    filters = [{}, {"camera": "cam1"}, {"camera": ["cam2", "cam1"]}, {"since": START + 3, "until": START + 12},
               {"since": START + DAY - 1}, {"per_track": False}, {"camera": "nowhere"}]
    for text in QUERIES:
        for f in filters:
            for k in (1, 5, 50):
                assert_same(single.query(text, k=k, **f), sharded.query(text, k=k, **f))
    key = sharded.query(QUERIES[0], k=1)[0].key
    assert_same(single.query_similar(single.query(QUERIES[0], k=1)[0].key, k=10), sharded.query_similar(key, k=10))


def test_global_keys_resolve_to_their_shard(twin):
    _, sharded, _ = twin
    g = sharded.open_gallery()
    keys = g.keys()
    assert len(set(keys)) == len(keys) == len(g)
    rows = g.rows(keys)
    assert sorted(rows) == sorted(keys)
    cameras = {s["no"]: s["camera"] for s in g.catalogue.shards()}
    for key, row in rows.items():
        assert row.key == key and cameras[g.catalogue.keys.split(key)[0]] == row.camera
        assert g.catalogue.keys.split(row.track)[0] == g.catalogue.keys.split(key)[0]  # tracks are the shard's own
        assert np.isclose(np.linalg.norm(g.embedding(key)), 1.0, atol=1e-2)
    with pytest.raises(KeyError):
        g.embedding(max(keys) + (1 << 40))
    with pytest.raises(QueryError, match="per_person"):
        sharded.query(QUERIES[0], per_person=True)


def test_a_filter_opens_only_matching_shards(twin, engine):
    _, _, root = twin
    fresh = Retriever(engine, gallery=root / "sharded")
    g = fresh.open_gallery()
    assert g.opened == 0
    hits = fresh.query(QUERIES[1], k=5, camera="cam2")
    assert hits and {h.camera for h in hits} == {"cam2"}
    assert g.opened == 1 and len(g.last_searched) == 1
    fresh.query(QUERIES[1], k=5, since=START + DAY, until=START + DAY + 60)  # day 2: camera 1 only
    assert g.opened == 2 and [s["day"] for s in g.catalogue.shards() if s["no"] in g.last_searched] == ["2023-11-15"]
    fresh.query(QUERIES[1], k=5, camera="cam2", since=START + DAY)  # cam2 has nothing on day 2: no shard
    assert g.last_searched == [] and g.opened == 2
    fresh.query(QUERIES[1], k=5)
    assert g.opened == 3 and len(g.last_searched) == 3


def test_retention_drops_whole_days(twin, engine, tmp_path):
    _, _, root = twin
    copy = tmp_path / "copy"
    shutil.copytree(root / "sharded", copy)
    r = Retriever(engine, gallery=copy)
    before = len(r.open_gallery())
    gone = r.open_gallery().drop_days_before("2023-11-15")
    assert sorted(gone) == ["shards/cam1/2023-11-14", "shards/cam2/2023-11-14"]
    assert not (copy / "shards" / "cam2" / "2023-11-14").exists()
    left = r.query(QUERIES[0], k=50)
    assert left and all(h.timestamp >= START + DAY for h in left) and len(r.open_gallery()) < before
    with pytest.raises(QueryError):
        r.open_gallery().drop_days_before("last week")


def test_a_reader_stops_serving_what_retention_removed(twin, engine, tmp_path):
    """A search service holding shards open must not go on serving a day that retention deleted."""
    _, _, root = twin
    copy = tmp_path / "copy"
    shutil.copytree(root / "sharded", copy)
    reader = Retriever(engine, gallery=copy)
    old = [h.key for h in reader.query(QUERIES[0], k=50) if h.timestamp < START + DAY]
    assert old and reader.open_gallery().rows(old)
    ShardedGallery(copy, encoders=None).drop_days_before("2023-11-15")  # another process's retention run
    g = reader.open_gallery()
    assert g.rows(old) == {}
    with pytest.raises(KeyError):
        g.embedding(old[0])
    with pytest.raises(KeyError):
        g.context(old[0])
    assert all(h.timestamp >= START + DAY for h in reader.query(QUERIES[0], k=50))


def test_what_a_sharded_root_does_not_do_is_one_line(twin):
    from sen_infer.errors import GalleryError

    _, sharded, _ = twin
    for call in (lambda: sharded.open_gallery().link_identities(), lambda: sharded.timeline(3),
                 lambda: sharded.tune_index()):
        with pytest.raises(GalleryError, match="sharded root"):
            call()


def test_the_same_recording_under_another_start_day_is_not_stored_twice(twin, video):
    _, sharded, root = twin
    g = sharded.open_gallery()
    before = len(g)
    rep = g.add_video(video / "cam2.mp4", camera="cam2", start_time=START + 3 * DAY)
    assert rep.added == 0 and rep.skipped_existing == 1 and "already in the gallery with start time" in rep.notes[0]
    assert len(g) == before and not (root / "sharded" / "shards" / "cam2" / "2023-11-17").exists()


def test_readyz_fails_while_a_shard_cannot_answer_and_recovers(twin, tmp_path):
    """/readyz runs a probe search through every shard a query would open: a shard whose database is
    damaged makes it 503 with the reason (so a load balancer stops sending queries that would fail);
    once the file is whole again it is 200."""
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from serving import call, served

    _, sharded, root = twin
    copy = tmp_path / "copy"
    shutil.copytree(root / "sharded", copy)
    folder = copy / "shards" / "cam2" / "2023-11-14"
    files = {p.name: p.read_bytes() for p in folder.glob("gallery.sqlite*")}  # the database, its WAL and index
    for name in files:  # damaged: the WAL goes too, or SQLite would read every page from it
        (folder / name).unlink()
    (folder / "gallery.sqlite").write_bytes(b"this is not a database" * 100)
    with served(sharded.engine_dir, gallery=copy) as base:
        status, _, got = call(base, "/api/v1/readyz")
        assert status == 503 and "gallery.sqlite" in got["error"], got
        for name, data in files.items():
            (folder / name).write_bytes(data)
        status, _, got = call(base, "/api/v1/readyz")
        assert status == 200 and got["rows"] == len(sharded.open_gallery()), got


def test_a_single_gallery_is_not_turned_into_a_root(twin):
    single, _, root = twin
    from sen_infer.errors import GalleryError

    with pytest.raises(GalleryError, match="single gallery"):
        make_sharded(root / "single")


def test_the_search_service_serves_a_sharded_root(twin):
    """The HTTP service over a sharded root: the same hits as the SDK, and each hit's evidence found in
    its own shard by its global key."""
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from serving import call, served

    _, sharded, root = twin
    with served(sharded.engine_dir, gallery=root / "sharded") as base:
        status, _, got = call(base, "/api/v1/query", {"text": QUERIES[0], "k": 6})
        from types import SimpleNamespace

        assert status == 200  # the server encodes the text in its own process: scores agree to ~1e-6
        assert_same([SimpleNamespace(**{**h, "bbox": tuple(h["bbox"])}) for h in got["hits"]],
                    sharded.query(QUERIES[0], k=6), tol=1e-4)
        hit = got["hits"][0]
        assert call(base, hit["crop_url"])[0] == 200 and call(base, hit["frame_url"])[0] == 200
        ctx = call(base, f"/api/v1/rows/{hit['key']}")[2]
        assert hit["key"] in [t["key"] for t in ctx["track"]]
        cams = call(base, "/api/v1/cameras")[2]["cameras"]
        assert {c["name"]: c["rows"] for c in cams} == {"cam1": len(sharded.open_gallery().keys("cam1")),
                                                      "cam2": len(sharded.open_gallery().keys("cam2"))}
        assert call(base, "/api/v1/info")[2]["rows"] == len(sharded.open_gallery())


def test_asking_for_existing_shards_uses_no_new_ids_and_removed_ids_are_not_reused(tmp_path):
    """10,000 `shard_for` calls on shards that exist leave the id sequence where it was (ids are the high
    bits of global keys: spending one per call ran them out); a shard made after retention gets a new id,
    never a removed one (a key must never point at other rows)."""
    import sqlite3

    from sen_infer.gallery.catalogue import Catalogue, make_sharded

    make_sharded(tmp_path / "root")
    cat = Catalogue(tmp_path / "root")
    made = [cat.shard_for(f"cam{c}", "2026-03-05")["no"] for c in range(4)]

    def sequence() -> int:
        with sqlite3.connect(cat.path) as conn:
            return conn.execute("SELECT seq FROM sqlite_sequence WHERE name='shards'").fetchone()[0]

    top = sequence()
    for i in range(10_000):
        assert cat.shard_for(f"cam{i % 4}", "2026-03-05")["no"] == made[i % 4]
    assert sequence() == top == max(made)
    cat.forget(made[-1])
    assert cat.shard_for("cam3", "2026-03-05")["no"] == top + 1  # made again: a new id, not the removed one


def test_routing_a_batch_in_one_transaction_matches_routing_one_by_one(tmp_path):
    """`route_many` (what the cluster driver uses: a job's recordings, one commit) sends each recording where
    `route` would: new content to its (camera, day) shard, content seen before to the shard holding it
    whatever camera or day it now claims, a content given twice in the batch to one shard; spans are
    widened and each touched day's write counter raised once."""
    import sqlite3

    from sen_infer.gallery.catalogue import Catalogue, make_sharded

    make_sharded(tmp_path / "one")
    make_sharded(tmp_path / "many")
    one, many = Catalogue(tmp_path / "one"), Catalogue(tmp_path / "many")
    batch = [("a" * 40, "camA", "2026-03-05", 10.0, 20.0), ("b" * 40, "camB", "2026-03-05", 30.0, 40.0),
             ("c" * 40, "camA", "2026-03-06", 5.0, 6.0), ("a" * 40, "camC", "2026-03-07", 50.0, 60.0),
             ("d" * 40, "camA", "2026-03-05", None, None)]
    singly = [one.route(*r)["path"] for r in batch]
    together = [e["path"] for e in many.route_many(batch)]
    assert together == singly == ["shards/camA/2026-03-05", "shards/camB/2026-03-05", "shards/camA/2026-03-06",
                                  "shards/camA/2026-03-05", "shards/camA/2026-03-05"]
    spans = {s["path"]: (s["t_min"], s["t_max"]) for s in many.shards()}
    assert spans["shards/camA/2026-03-05"] == (10.0, 60.0)  # widened by the copy's claimed span too
    with sqlite3.connect(many.path) as conn:
        counters = dict(conn.execute("SELECT day, writes FROM day_writes"))
    assert counters == {"2026-03-05": 1, "2026-03-06": 1}
    assert [e["path"] for e in many.route_many([("c" * 40, "camZ", "2026-04-01", None, None)])] == \
        ["shards/camA/2026-03-06"]


def test_a_catalogue_entry_left_without_its_shard_is_skipped_not_fatal(engine, synth_learn, tmp_path):
    """A routing killed after the catalogue entry was written and before the writer opened the shard
    leaves an entry with no folder: every read skips it (it holds no rows) instead of failing every
    query of that camera or of all cameras, and an ingest of that camera and day makes the shard."""
    from sen_infer.gallery.catalogue import Catalogue

    root = tmp_path / "root"
    make_sharded(root)
    images = [str(p) for p in sorted((synth_learn / "imgs").rglob("*.jpg"))[:4]]
    day_start = 1_772_668_800.0  # 2026-03-05 00:00 UTC
    Retriever(engine, gallery=root).gallery.add_images(images, camera="camA", timestamp=day_start + 60)
    Catalogue(root).shard_for("camB", "2026-03-05")  # the entry alone, as the kill left it
    assert not (root / "shards" / "camB").exists()
    r = Retriever(engine, gallery=root)
    hits = r.query("a man", k=10)
    assert len(hits) == 4 and r.query("a man", k=10, camera="camB") == []
    assert len(r.gallery) == 4 and r.gallery.stats()["shards"] == 1 and r.gallery.check()["ok"]
    assert [c["name"] for c in r.gallery.camera_summary()] == ["camA"]
    r.gallery.add_images(images[:1], camera="camB", timestamp=day_start + 120)
    assert r.gallery.stats()["shards"] == 2 and len(r.query("a man", k=10, camera="camB")) == 1


def test_keys_of_10000_cameras_over_10_years_stay_json_safe_and_an_older_root_keeps_its_keys(tmp_path):
    """The capacity plan (docs/scale.md): one shard per camera and day, 10,000 cameras, 10 years (3,653 days
    with the leap days). The last shard's largest key must be exact as a JSON number (a float64: below
    2**53), a shard past what the layout allows is refused rather than made, and a root made before the
    layout was recorded keeps its 32-bit keys (the keys its users hold must not move to other rows)."""
    import json
    import sqlite3

    from sen_infer.errors import GalleryError
    from sen_infer.gallery.catalogue import Catalogue

    root = tmp_path / "root"
    make_sharded(root)
    cat = Catalogue(root)
    cat.shard_for("cam0", "2026-12-05")  # the sequence exists once a shard was made
    plan = 10_000 * 3_653
    with sqlite3.connect(root / "catalogue.sqlite") as conn:
        conn.execute("UPDATE sqlite_sequence SET seq=? WHERE name='shards'", (plan - 1,))
    no = cat.shard_for("cam9999", "2036-12-04")["no"]
    assert no == plan
    keys = cat.keys
    last = keys.join(no, (1 << keys.local_bits) - 1)  # its last row, track or person
    assert last < 2**53 and json.loads(json.dumps(float(last))) == last  # exact through a JSON float
    assert keys.split(last) == (no, (1 << keys.local_bits) - 1)
    assert (1 << keys.local_bits) >= 100_000_000  # a camera-day may hold 100 M rows
    with pytest.raises(GalleryError, match="does not fit"):
        keys.join(no, 1 << keys.local_bits)  # would be another shard's key
    with sqlite3.connect(root / "catalogue.sqlite") as conn:
        conn.execute("UPDATE sqlite_sequence SET seq=? WHERE name='shards'", (keys.max_shards - 1,))
    with pytest.raises(GalleryError, match="2\\*\\*53"):
        cat.shard_for("cam1", "2036-12-04")
    assert [s["camera"] for s in cat.shards()] == ["cam0", "cam9999"]  # refused: nothing made
    with sqlite3.connect(root / "catalogue.sqlite") as conn:
        conn.execute("DELETE FROM meta WHERE key='local_bits'")  # as a root of the previous version
    assert Catalogue(root).keys.local_bits == 32
