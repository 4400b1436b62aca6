"""The visualise command writes PNGs of the expected size for a tiny checkpoint."""

import os

import cv2

from helpers import run_cli  # noqa: E402
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def _run(*args):
    return run_cli(*args, module="sen_train.visualize", env=ENV, timeout=None)


def test_retrieval_grid_and_tir_sheet(tiny_run, synth_learn, tmp_path):
    ckpt = str(tiny_run[1] / "best")
    r = _run("retrieval", "--ckpt", ckpt, "--data", str(synth_learn), "--caption-index", "0", "--k", "6",
             "--out", str(tmp_path / "ret.png"))
    assert r.returncode == 0, r.stderr
    grid = cv2.imread(str(tmp_path / "ret.png"))
    assert grid.shape == (22 + 192 + 8, 6 * (64 + 8), 3)  # label + image + borders, k columns
    framed = {tuple(int(c) for c in grid[30, x * 72 + 1]) for x in range(6)}  # the frame colours
    assert framed <= {(40, 170, 40), (40, 40, 220)} and len(framed) >= 1
    r = _run("tir", "--ckpt", ckpt, "--data", str(synth_learn), "--n", "3", "--out", str(tmp_path / "tir.png"))
    assert r.returncode == 0, r.stderr
    assert cv2.imread(str(tmp_path / "tir.png")).shape == (3 * 192, 3 * 64, 3)


def test_errors_are_one_line(tiny_run, synth_learn, tmp_path):
    r = _run("retrieval", "--ckpt", str(tiny_run[1] / "best"), "--data", str(synth_learn))
    assert r.returncode == 2 and r.stderr.strip() == "error: give --caption-index or --query"
    r = _run("tir", "--ckpt", str(tmp_path), "--data", str(synth_learn))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
