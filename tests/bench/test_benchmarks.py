"""Smoke tests: every benchmark runs on a tiny engine and writes its figures (values not asserted)."""

import json

import pytest

from helpers import ROOT

from benchmarks import e2e, encoders, index, ingest, onnx_towers, synth_speed, train_speed, video_retrieval


@pytest.fixture(autouse=True)
def results_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("SEN_BENCH_RESULTS", str(tmp_path))
    return tmp_path


def _load(tmp_path, name):
    doc = json.loads((tmp_path / f"{name}.json").read_text())
    assert doc["machine"]["cores"] >= 1 and doc["rows"]
    assert (tmp_path / f"{name}.md").is_file() and (tmp_path / f"{name}.png").stat().st_size > 1000
    return doc


def test_encoders(engine, tiny_run, results_in_tmp):
    encoders.main(["--engine", str(engine), "--ckpt", str(tiny_run[1] / "best"), "--batches", "1", "4",
                   "--repeats", "2"])
    doc = _load(results_in_tmp, "encoders_tiny")
    backends = {r["backend"] for r in doc["rows"]}
    assert {"torch", "onnx-cpu", "onnx-cpu-int8"} <= backends and "onnx-cpu L=77" in backends
    assert doc["matmul_peak_gflops"] > 0 and doc["best_image_gflops"] > 0
    assert any("speedup_vs_torch" in r for r in doc["rows"] if r["backend"] == "onnx-cpu")
    assert (results_in_tmp / "encoders_tiny.png").stat().st_size > 1000


def test_index(engine, results_in_tmp):
    index.main(["--n", "3000", "--dim", "64", "--queries", "50", "--engine", str(engine), "--real", "200"])
    doc = _load(results_in_tmp, "index")
    methods = {r["method"] for r in doc["rows"]}
    assert {"numpy exact f32", "usearch exact f32", "usearch HNSW f16", "usearch HNSW i8"} <= methods
    assert all(0 <= r["recall@10"] <= 1 for r in doc["rows"])
    assert [f["selectivity"] for f in doc["filtered_search"]] == [0.5, 0.1, 0.01]
    assert any(r["data"].startswith("SynthPEDES") for r in doc["rows"])


def test_e2e(engine, results_in_tmp):
    e2e.main(["--engine", str(engine), "--n", "2000", "--queries", "5"])
    doc = _load(results_in_tmp, "e2e")
    assert [r["stage"] for r in doc["rows"]] == ["tokenize", "encode", "search", "metadata", "total"]
    assert doc["ingest_frames_per_s"] > 0 and doc["ingest"]["frames"] == 2 * 150


def test_onnx_towers_and_video_retrieval(engine, synth_learn, results_in_tmp, tmp_path_factory):
    onnx_towers.main(["--engine", str(engine), "--repeats", "2"])
    doc = _load(results_in_tmp, "onnx_towers_tiny")
    assert doc["text_fp32_77_over_short"] > 0
    from sen_train.data.synth_video import VideoConfig, generate, identities_from_dataset

    video = tmp_path_factory.mktemp("bench_video")
    generate(VideoConfig(cameras=1, seconds=6, fps=10, seed=2), video, identities_from_dataset(synth_learn, "test"),
             progress=False)
    video_retrieval.main(["--engine", str(engine), "--video", str(video)])
    doc = _load(results_in_tmp, "video_retrieval")
    assert 0 <= doc["R1"] <= doc["R5"] <= 100 and doc["frames"] == 60


def test_generator_and_training_speed(results_in_tmp):
    synth_speed.main(["--n", "40", "--images-per-id", "4"])
    assert _load(results_in_tmp, "synth_speed")["rows"][0]["images/s"] > 0
    train_speed.main(["--presets", "tiny", "--steps", "1", "--batch", "4"])
    assert _load(results_in_tmp, "train_speed")["rows"][0]["samples_per_s"] > 0


def test_ingest(engine, results_in_tmp):
    ingest.main(["--rows", "300", "600", "--small", "200", "--dim", "32", "--engine", str(engine),
                 "--photos", "2", "--video-minutes", "0.2"])
    doc = _load(results_in_tmp, "ingest")
    whats = [r["what"] for r in doc["rows"]]
    assert sum(w.startswith("store 1,000 rows at ") for w in whats) == 2
    assert all(0 <= r["hnsw_ms"] <= r["ms"] for r in doc["rows"] if "hnsw_ms" in r)
    assert sum(w.startswith("query QPS") for w in whats) == 6
    assert doc["this_photos"]["added"] == 2 and doc["this_photos"]["peak_kb"] >= doc["this_photos"]["before_kb"]
    assert doc["this_video"]["frames"] == 180


def test_gpu_check_exits_2_with_one_line_without_a_gpu():
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") and subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0:
        pytest.skip("a GPU is present: the check would run for real")
    root = ROOT
    r = subprocess.run(["bash", str(root / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "GPU" in r.stderr


def test_random_checkpoint_loads_and_says_it_is_random(tmp_path):
    import json

    from benchmarks import random_checkpoint
    from sen_train.checkpoint import load_model

    assert random_checkpoint.main(["--preset", "tiny", "--out", str(tmp_path / "ckpt")]) == 0
    meta = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert meta["random_weights"] is True and meta["config"]["model"]["pretrained"] is None
    assert load_model(tmp_path / "ckpt").image_size == (192, 64)
    assert random_checkpoint.main(["--preset", "nope", "--out", str(tmp_path / "x")]) == 2


def test_identity_benchmark_and_video_retrieval_pipelines(engine, synth_learn, results_in_tmp, tmp_path_factory):
    from benchmarks import identity

    identity.main(["--engine", str(engine), "--dataset", str(synth_learn), "--cameras", "2", "--seconds", "6",
                   "--people", "3", "--seed", "4"])
    doc = _load(results_in_tmp, "identity")
    assert [r["threshold"] for r in doc["rows"]] == identity.THRESHOLDS
    assert all(0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 for r in doc["rows"])
    assert (results_in_tmp / "identity.png").stat().st_size > 0
    from sen_train.data.synth_video import VideoConfig, generate, identities_from_dataset

    video = tmp_path_factory.mktemp("pipelines_video")
    generate(VideoConfig(cameras=1, seconds=5, fps=10, seed=3), video, identities_from_dataset(synth_learn, "test"),
             progress=False)
    video_retrieval.main(["--engine", str(engine), "--video", str(video), "--pipelines",
                          "mog2+iou,mog2-split+motion", "--name", "pipelines"])
    rows = _load(results_in_tmp, "pipelines")["rows"]
    assert [r["pipeline"] for r in rows] == ["mog2 + iou", "mog2-split + motion"]


def test_serve_load(engine, video, results_in_tmp, tmp_path):
    """The load benchmark on a small gallery for a second per level: no request fails and every row the
    concurrent ingest committed is in the table and served (its figures are not asserted)."""
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from benchmarks import serve
    from sen_infer import Retriever

    gallery = tmp_path / "gallery"
    Retriever(engine, gallery=gallery).gallery.add_video(video / "cam1.mp4", camera="cam1")
    serve.main(["--engine", str(engine), "--gallery", str(gallery), "--video-dir", str(video),
                "--data", str(tmp_path / "no data"), "--seconds", "1", "--clients", "1", "3",
                "--work", str(tmp_path / "work")])
    doc = _load(results_in_tmp, "serve")
    assert [(r["mode"], r["clients"]) for r in doc["rows"]] == [
        (m, c) for m in ("sdk (in process)", "server", "server + ingest") for c in (1, 3)]
    assert doc["errors_total"] == 0 and all(r["requests"] > 0 for r in doc["rows"])
    assert doc["ingest"]["rows_lost"] == 0 and doc["ingest"]["videos_ingested"] >= 1
    assert doc["ingest"]["rows_in_table"] == doc["ingest"]["rows_before"] + doc["ingest"]["rows_committed_by_ingest"]


def test_cluster(engine, video, results_in_tmp, tmp_path):
    """The scale-out benchmark, small: Ray with 1 and 2 workers stores the rows the sequential ingest
    stores, and the fan-out rows cover 1, 10 and 100 shards (figures not asserted)."""
    pytest.importorskip("ray", reason="the cluster extra is not installed")
    from benchmarks import cluster

    cluster.main(["--engine", str(engine), "--video-dir", str(video), "--videos", "2", "--rows", "3000",
                  "--dim", "32", "--queries", "10", "--writers", "1", "--work", str(tmp_path / "work")])
    doc = _load(results_in_tmp, "cluster")
    ingest = [r for r in doc["rows"] if r["part"] == "ingest"]
    assert [r["workers"] for r in ingest] == [0, 1, 2] and len({r["rows"] for r in ingest}) == 1
    assert ingest[0]["rows"] > 0
    assert all(r["writer_actors"] == 1 for r in ingest[1:])  # --writers 1: one writer served both cameras' shards
    assert all(0 < r[f"writer_rss_mb_{when}"] <= 4096 for r in ingest[1:]
               for when in ("started", "peak", "after_job"))  # MB, read from /proc
    assert sorted({r["shards"] for r in doc["rows"] if r["part"] == "query fan-out"}) == [1, 10, 100]


def test_detectors_per_core(results_in_tmp):
    """The detectors' speed benchmark on a few synthetic frames: every detector x size has its figures."""
    from benchmarks import detectors

    detectors.main(["--frames", "6", "--detectors", "mog2,ssdlite"])
    doc = json.loads((results_in_tmp / "detectors.json").read_text())
    assert {(r["detector"], r["size"]) for r in doc["rows"]} == {(d, s) for d in ("mog2", "ssdlite")
                                                                for s in ("640x480", "768x576")}
    assert all(r["detector_fps"] > 0 and r["camera_fps_at_stride"] > 0 for r in doc["rows"])
    assert doc["threads"] == 1


def test_proxy(engine, video, results_in_tmp, tmp_path):
    """The proxy benchmark, small: direct and through nginx (docs/nginx.conf), every query answered in both
    modes (its figures are not asserted)."""
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from nginx_proxy import nginx_binary

    if nginx_binary() is None:
        pytest.skip("no nginx binary (Debian: apt-get install nginx-light; `make test` installs it where it can)")
    from benchmarks import proxy
    from sen_infer import Retriever

    gallery = tmp_path / "gallery"
    Retriever(engine, gallery=gallery).gallery.add_video(video / "cam1.mp4", camera="cam1")
    proxy.main(["--engine", str(engine), "--gallery", str(gallery), "--data", str(tmp_path / "no data"),
                "--clients", "2", "--count", "3", "--rounds", "2", "--work", str(tmp_path / "work")])
    doc = json.loads((results_in_tmp / "proxy.json").read_text())
    assert [r["mode"] for r in doc["rows"]] == ["direct", "through nginx"]
    assert doc["errors_total"] == 0 and all(r["requests"] == 2 * 3 * 2 for r in doc["rows"]) and doc["ratio"] > 0


def test_bulk(results_in_tmp):
    """The bulk import benchmark, small: every construction width builds and is measured (values not asserted)."""
    from benchmarks import bulk

    bulk.main(["--rows", "3000", "--dim", "32", "--queries", "10", "--baseline", "1000", "--widths", "64", "16",
               "--search-widths", "64", "32", "--checkpoint-from", "500", "--without-checkpoints"])
    doc = json.loads((results_in_tmp / "bulk.json").read_text())
    assert [r["expansion_add"] for r in doc["rows"]] == [128, 64, 64, 16, 16, 64] and all(r["rows_per_s"] > 0 for r in doc["rows"])
    assert [r["expansion_search"] for r in doc["rows"][1:-1]] == [64, 32, 64, 32]
    assert all(0 <= r["recall@10"] <= 1 and r["search_p50_ms"] > 0 for r in doc["rows"][1:-1])
    assert doc["rows"][1]["way"] == "bulk_import (checkpoints from 500)"
    assert doc["rows"][-1]["way"] == "bulk_import (saved at the end only)"


def test_scale_quick_with_streamed_data(results_in_tmp, tmp_path, monkeypatch):
    """The scale benchmark's --quick run on data written and scanned in chunks (the 10M path, made to run at
    3,000 rows by lowering its thresholds): the streamed truth is the exact top-10 of the stored float16 rows
    (checked against a scan of the whole matrix at once), and the quick report has the default row."""
    import numpy as np

    from benchmarks import big_data, scale
    from benchmarks.index import exact_topk

    monkeypatch.setattr(scale, "STREAMED", 1000)
    monkeypatch.setattr(big_data, "CHUNK", 700)  # 3,000 rows in 5 chunks, the last a short one
    scale.main(["--rows", "3000", "--dim", "32", "--queries", "20", "--latency-queries", "10", "--quick",
                "--work", str(tmp_path / "w"), "--name", "scale_small"])
    data = np.load(tmp_path / "w" / "data.npy")
    assert data.dtype == np.float16 and data.shape == (3000, 32)
    truth = np.load(tmp_path / "w" / "truth.npy")
    expected = exact_topk(data.astype(np.float32), np.load(tmp_path / "w" / "queries.npy"))
    assert (np.sort(truth, 1) == np.sort(expected, 1)).all()
    doc = json.loads((results_in_tmp / "scale_small.json").read_text())
    assert [r["setting"] for r in doc["rows"]] == ["default params"] and 0 <= doc["rows"][0]["recall@10"] <= 1
    # a rerun with the same --work reuses data of the same shapes (a 10M rerun skips making 10 GB again);
    # with another row count, the files are made anew and the truth is that of the new data
    made = {f: (tmp_path / "w" / f).stat().st_mtime_ns for f in ("data.npy", "queries.npy", "truth.npy")}
    quick = ["--dim", "32", "--queries", "20", "--latency-queries", "10", "--quick", "--work", str(tmp_path / "w")]
    scale.main(["--rows", "3000", *quick, "--name", "scale_small"])
    assert {f: (tmp_path / "w" / f).stat().st_mtime_ns for f in made} == made
    scale.main(["--rows", "2500", *quick, "--name", "scale_other"])
    data = np.load(tmp_path / "w" / "data.npy")
    assert data.shape == (2500, 32)
    expected = exact_topk(data.astype(np.float32), np.load(tmp_path / "w" / "queries.npy"))
    assert (np.sort(np.load(tmp_path / "w" / "truth.npy"), 1) == np.sort(expected, 1)).all()


def test_days(results_in_tmp, tmp_path):
    """The month-of-a-city benchmark, small (3 days x 4 cameras): compaction builds every day and the
    compacted root answers (recall is asserted only to be a fraction: its value is the benchmark's)."""
    from benchmarks import days

    days.main(["--days", "3", "--cameras", "4", "--rows", "6", "--dim", "32", "--queries", "5", "--work",
               str(tmp_path / "work")])
    doc = json.loads((results_in_tmp / "days.json").read_text())
    assert doc["build"]["shards"] == 12 and doc["compact"]["days_built"] == 3
    assert doc["after"]["graphs_searched"] == 3 and 0 <= doc["after"]["recall@10"] <= 1
    assert doc["catalogue"]["entries"] >= 12
    runs = doc["cold"]["page_cache_as_left"]
    assert len(runs) == 5 and all(r["ms"] > 0 and r["disk_read_mb"] >= 0 for r in runs)
    days.main(["--days", "3", "--cameras", "4", "--rows", "6", "--dim", "32", "--queries", "5", "--work",
               str(tmp_path / "work"), "--rerun", "cold", "--cold-runs", "2"])  # the same root, the cold runs anew
    again = json.loads((results_in_tmp / "days.json").read_text())
    assert len(again["cold"]["page_cache_as_left"]) == 2 and again["compact"] == doc["compact"]


def test_days_with_an_engine_times_text_queries_in_process_and_through_serve(engine, results_in_tmp, tmp_path):
    """--engine: the root takes the engine's size and fingerprint, and both text cases are answered in process
    and by a real `serve` on 127.0.0.1 (what the service adds is reported, not asserted)."""
    from benchmarks import days

    days.main(["--days", "2", "--cameras", "3", "--rows", "4", "--queries", "5", "--cold-runs", "1", "--work",
               str(tmp_path / "work"), "--engine", str(engine)])
    doc = json.loads((results_in_tmp / "days.json").read_text())
    assert doc["dim"] == json.loads((engine / "manifest.json").read_text())["embed_dim"]
    assert set(doc["serve"]) == {"one camera, one day", "all cameras, 2 days"}
    for case in doc["serve"].values():
        assert case["in_process"]["n"] == case["through_serve"]["n"] == 50
