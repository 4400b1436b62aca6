"""Synthetic camera video: the MOT ground truth matches what OpenCV decodes from the files."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from sen_train.data.synth_video import VideoConfig, VideoWriteError, generate, identities_from_dataset

from helpers import ROOT  # noqa: E402
CFG = VideoConfig(cameras=2, seconds=4, seed=5, fps=10, width=240, height=160, people=4, tracks_per_camera=4)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    out = tmp_path_factory.mktemp("video")
    table = generate(CFG, out, progress=False)
    return out, table


def _frames(path):
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


def test_files_and_table(video):
    out, table = video
    assert set(table["cameras"]) == {"cam1", "cam2"}
    for cam, info in table["cameras"].items():
        assert (out / info["video"]).is_file() and (out / info["ground_truth"]).is_file()
        assert info["frames"] == 40 and info["fps"] == 10
    assert json.loads((out / "identities.json").read_text())["tracks"] == table["tracks"]
    for t in table["tracks"]:
        ident = table["identities"][str(t["pid"])]
        assert len(ident["captions"]) == 2 and ident["attributes"]["top_colour"] in " ".join(ident["captions"])


def test_ground_truth_matches_decoded_frames(video):
    out, table = video
    checked_inside = 0
    for cam, info in table["cameras"].items():
        frames = _frames(out / info["video"])
        assert len(frames) == info["frames"]
        assert frames[0].shape == (info["height"], info["width"], 3)
        background = cv2.imread(str(out / info["background"])).astype(np.int16)
        gt = np.loadtxt(out / info["ground_truth"], delimiter=",", ndmin=2)
        assert gt.shape[1] == 9
        tracks = {t["track"] for t in table["tracks"] if t["camera"] == cam}
        assert set(gt[:, 1].astype(int)) <= tracks
        H, W = info["height"], info["width"]
        for i, frame in enumerate(frames, start=1):
            rows = gt[gt[:, 0] == i]
            diff = np.abs(frame.astype(np.int16) - background).max(axis=2)
            covered = np.zeros((H, W), bool)
            for _, _, x, y, w, h, _, _, vis in rows:
                x, y, w, h = int(x), int(y), int(w), int(h)
                covered[max(0, y - 3) : max(0, y + h + 3), max(0, x - 3) : max(0, x + w + 3)] = True
                if vis > 0.99 and x >= 0 and y >= 0 and x + w <= W and y + h <= H:
                    # a fully visible person: a large share of the box differs from the empty scene
                    assert (diff[y : y + h, x : x + w] > 25).mean() > 0.3, (cam, i)
                    checked_inside += 1
            # nothing drawn outside the boxes: only codec and sensor noise (mp4v: mean ~6.5 levels)
            if (~covered).any():
                assert diff[~covered].mean() < 10, (cam, i)
                assert (diff[~covered] > 40).mean() < 0.005, (cam, i)
    assert checked_inside > 20


def _overlaps(row, others):
    x, y, w, h = row[2:6]
    return any(o[2] < x + w and x < o[2] + o[4] and o[3] < y + h and y < o[3] + o[5] for o in others)


def test_visibility_reflects_edges_and_occlusion(video):
    out, _ = video
    gt = np.loadtxt(out / "cam1.gt.txt", delimiter=",", ndmin=2)
    leaving = gt[(gt[:, 2] < 0) | (gt[:, 2] + gt[:, 4] > CFG.width)]
    assert len(leaving) and (leaving[:, 8] < 1).all()
    alone, crowded = [], []
    for row in gt:
        others = [o for o in gt[gt[:, 0] == row[0]] if o[1] != row[1]]
        inside = row[2] >= 0 and row[2] + row[4] <= CFG.width and row[3] >= 0 and row[3] + row[5] <= CFG.height
        if inside:
            (crowded if _overlaps(row, others) else alone).append(row[8])
    assert alone and all(v == pytest.approx(1.0) for v in alone)  # nobody in front: fully visible
    assert crowded and min(crowded) < 0.9  # someone nearer walks in front


def test_deterministic(video, tmp_path):
    out, _ = video
    generate(CFG, tmp_path, progress=False)
    assert (tmp_path / "cam1.gt.txt").read_bytes() == (out / "cam1.gt.txt").read_bytes()
    assert (tmp_path / "identities.json").read_bytes() == (out / "identities.json").read_bytes()


def test_identities_from_dataset(synth_small, tmp_path):
    people = identities_from_dataset(synth_small, "test")
    truth = json.loads((synth_small / "attributes.json").read_text())
    assert set(people) == {p["id"] for p in truth["identities"] if p["split"] == "test"}
    table = generate(VideoConfig(cameras=1, seconds=1, fps=5, width=160, height=120), tmp_path, people,
                     progress=False)
    assert {t["pid"] for t in table["tracks"]} <= set(people)


def test_unwritable_video_fails_loudly(tmp_path):
    (tmp_path / "cam1.mp4").mkdir()  # a directory where the video should go
    with pytest.raises(VideoWriteError, match="cam1.mp4"):
        generate(VideoConfig(cameras=1, seconds=1, fps=5, width=160, height=120), tmp_path, progress=False)


def test_cli(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sen_train.data.synth_video", "--out", str(tmp_path), "--cameras", "1",
                        "--seconds", "1", "--fps", "5", "--size", "160", "120", "--quiet"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "cam1: 5 frames @ 5 fps (160x120)" in r.stdout
    bad = subprocess.run([sys.executable, "-m", "sen_train.data.synth_video", "--out", str(tmp_path / "b"),
                          "--dataset", str(tmp_path / "nope")], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1
