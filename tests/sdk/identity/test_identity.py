"""One identity across cameras: the linking rules on constructed tracks with known identities, the
store's persons (rows, per-person search, timelines, other readers), and the CLI on real video."""

import json
import subprocess
import sys

import numpy as np
import pytest

from sen_infer import Row, VectorStore
from sen_infer.identity.linking import TrackSummary, conflict, link_tracks, pairwise_scores

from helpers import ROOT  # noqa: E402
DIM = 32
FP = "f" * 64


def _identity_vectors(n, seed=0):
    v = np.random.default_rng(seed).standard_normal((n, DIM))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _near(v, rng, noise=0.15):
    """A track's summary: its identity's vector plus noise (cosine about 0.9 to the identity)."""
    x = v + noise * rng.standard_normal(DIM) / np.sqrt(DIM) * 3
    return (x / np.linalg.norm(x)).astype(np.float32)


def test_tracks_of_three_people_in_three_cameras_are_linked_by_identity():
    rng = np.random.default_rng(1)
    ids = _identity_vectors(3)
    plan = [  # (track, identity, camera, start, end): each person walks through the cameras in turn
        (1, 0, "a", 0, 10), (2, 1, "a", 5, 15), (3, 2, "b", 0, 8),
        (4, 0, "b", 30, 40), (5, 1, "c", 40, 50), (6, 2, "c", 20, 30),
        (7, 0, "c", 70, 80), (8, 1, "a", 90, 95), (9, 2, "a", 60, 66),
    ]
    tracks = [TrackSummary(t, cam, s, e, _near(ids[i], rng)) for t, i, cam, s, e in plan]
    person = link_tracks(tracks, threshold=0.7)
    groups = {}
    for t, i, *_ in plan:
        groups.setdefault(person[t], set()).add(i)
    assert sorted(map(sorted, groups.values())) == [[0], [1], [2]]
    assert {person[t] for t, i, *_ in plan if i == 0} == {1}  # a person's id is its smallest track id
    truth = {t: i for t, i, *_ in plan}
    assert pairwise_scores(person, truth)[:2] == (1.0, 1.0)


def test_time_rules_keep_one_look_apart():
    v = _identity_vectors(1)[0].astype(np.float32)
    same_time_same_cam = [TrackSummary(1, "a", 0, 10, v), TrackSummary(2, "a", 5, 12, v)]
    assert link_tracks(same_time_same_cam, 0.5) == {1: 1, 2: 2}  # one person is not in two places at once
    same_time_other_cam = [TrackSummary(1, "a", 0, 10, v), TrackSummary(2, "b", 5, 12, v)]
    assert link_tracks(same_time_other_cam, 0.5) == {1: 1, 2: 2}
    assert link_tracks(same_time_other_cam, 0.5, overlapping_views=True) == {1: 1, 2: 1}  # views overlap
    far_apart = [TrackSummary(1, "a", 0, 10, v), TrackSummary(2, "b", 10 + 7200, 10 + 7300, v)]
    assert link_tracks(far_apart, 0.5, max_gap=3600) == {1: 1, 2: 2}
    assert link_tracks(far_apart, 0.5, max_gap=None) == {1: 1, 2: 1}
    no_time = [TrackSummary(1, None, None, None, v), TrackSummary(2, None, None, None, v)]
    assert link_tracks(no_time, 0.5) == {1: 1, 2: 1} and not conflict(*no_time, 3600, False)


def test_a_chain_of_look_alikes_does_not_become_one_person():
    # A.B = B.C = cos 36.3 deg = 0.806 and A.C = 0.3: B may join A, but then C is too far from the pair
    theta = np.arccos(0.3)
    a = np.array([1.0, 0.0] + [0.0] * (DIM - 2), np.float32)
    c = np.array([np.cos(theta), np.sin(theta)] + [0.0] * (DIM - 2), np.float32)
    b = (a + c) / np.linalg.norm(a + c)
    tracks = [TrackSummary(1, "x", 0, 1, a), TrackSummary(2, "y", 10, 11, b), TrackSummary(3, "z", 20, 21, c)]
    person = link_tracks(tracks, threshold=0.8)
    # B joins A or C (the two similarities are equal up to rounding), never both: A and C stay apart
    assert person[1] != person[3] and person[2] in (person[1], person[3])


def test_pairwise_scores_by_hand():
    person = {1: 1, 2: 1, 3: 1, 4: 4}
    truth = {1: "p", 2: "p", 3: "q", 4: "q"}
    # linked pairs: (1,2) right, (1,3) and (2,3) wrong -> precision 1/3; true pairs (1,2), (3,4) -> recall 1/2
    assert pairwise_scores(person, truth) == (pytest.approx(1 / 3), 0.5, 3, 2)
    assert pairwise_scores(person, truth, possible=lambda a, b: {a, b} != {3, 4})[:2] == (pytest.approx(1 / 3), 1.0)


def test_store_persons_rows_search_and_timeline(tmp_path):
    store = VectorStore.open(tmp_path / "g", FP, DIM)
    reader = VectorStore.open(tmp_path / "g", FP, DIM)  # another process's view of the same gallery
    ids = _identity_vectors(2, seed=3)
    rng = np.random.default_rng(4)
    # camera a sees person 0 then person 1, camera b sees person 1 then person 0; one row per track
    plan = [("a", 0, 0, 10), ("a", 1, 20, 30), ("b", 1, 100, 110), ("b", 0, 200, 210)]
    for n, (cam, who, t0, t1) in enumerate(plan):
        row = Row(f"{cam}.mp4", cam, int(t0 * 15), float(t0 + 1), (0, 0, 10, 30), 1, None)
        store.add_embeddings(_near(ids[who], rng, 0.05)[None], [row], local_tracks=True,
                             spans={1: (int(t0 * 15), int(t1 * 15), float(t0), float(t1))})
    summaries = {s.track: s for s in store.track_summaries()}
    assert [(s.start, s.end) for s in summaries.values()] == [(0, 10), (20, 30), (100, 110), (200, 210)]
    person = link_tracks(list(summaries.values()), threshold=0.8)
    assert person == {1: 1, 2: 2, 3: 2, 4: 1}
    assert all(r.person is None for r in reader.rows(reader.keys()).values())
    store.set_persons(person, {"threshold": 0.8})
    rows = reader.rows(reader.keys())  # the other reader sees the links without reopening
    assert sorted((r.track, r.person) for r in rows.values()) == [(1, 1), (2, 2), (3, 2), (4, 1)]
    per_track = reader.search(ids[0].astype(np.float32), k=4)
    per_person = reader.search(ids[0].astype(np.float32), k=4, per_person=True)
    assert len(per_track) == 4 and [h.person for h in per_person] == [1, 2]
    timeline = store.appearances(1)
    assert [(a.track, a.camera, a.start, a.end) for a in timeline] == [(1, "a", 0, 10), (4, "b", 200, 210)]
    assert store.appearances(3) == []  # track 3 belongs to person 2: not a person of its own


@pytest.mark.slow
def test_cli_links_after_ingest_and_answers_per_person_and_timeline(engine, tmp_path):
    from sen_train.data.synth_video import VideoConfig, generate

    generate(VideoConfig(cameras=2, seconds=8, seed=9, people=3), tmp_path / "v", progress=False)
    base = [sys.executable, "-m", "sen_infer"]
    common = ["--engine", str(engine), "--gallery", str(tmp_path / "g"), "--json"]
    r = subprocess.run(base + ["ingest", *common, "--quiet", "--detector", "mog2-split", "--tracker", "motion",
                               str(tmp_path / "v" / "cam1.mp4"), str(tmp_path / "v" / "cam2.mp4")],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["identities"]["tracks"] == report["tracks"] > 0
    r = subprocess.run(base + ["query", *common, "a person", "-k", "50", "--per-person"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    hits = json.loads(r.stdout)["hits"]
    persons = [h["person"] for h in hits]
    assert r.returncode == 0 and None not in persons and len(persons) == len(set(persons))
    assert len(hits) == report["identities"]["persons"]
    r = subprocess.run(base + ["timeline", *common, str(persons[0])], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    appearances = json.loads(r.stdout)["appearances"]
    assert r.returncode == 0 and appearances and hits[0]["track"] in [a["track"] for a in appearances]
    starts = [a["start"] for a in appearances]
    assert starts == sorted(starts)
    r = subprocess.run(base + ["timeline", *common, "999999"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "no tracks for person 999999" in r.stderr
