"""The main job on embedded defaults: data -> train -> export -> ingest video -> query.

  1. SynthPEDES (200 identities) in the CUHK-PEDES format;
  2. two synthetic camera videos of the held-out (test) identities, with ground truth;
  3. train the `small` SEN preset from scratch (about 8 minutes on 2 CPU cores);
  4. export ONNX fp32 + int8 behind the parity gate;
  5. ingest the videos into the engine's gallery (detect, track, embed);
  6. three text queries, printed with the ground-truth identity of each hit, and a contact sheet;
     6b. where the team's real footage is at hand, it is ingested with the default (neural) pipeline and
     a contact sheet of the stored crops written;
  7. the test-split metrics of the trained model.
Every step reuses what an earlier run left in demo_out/.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sen_train.data import synth, synth_video  # noqa: E402

OUT = Path("demo_out")
DATA_CFG = synth.SynthConfig(ids=200, seed=0)
VIDEO_CFG = synth_video.VideoConfig(cameras=2, seconds=20, seed=0)
TRAIN_OVERRIDES = ["epochs=10"]  # the `small` preset, 10 epochs: the demo's CPU budget


def _same_config(path: Path, key: str, cfg) -> bool:
    try:
        saved = json.loads(path.read_text())[key]
    except (OSError, ValueError, KeyError):
        return False
    return json.loads(json.dumps(asdict(cfg))) == saved


def _same_people(video_dir: Path, people: dict) -> bool:
    """The saved videos show identities of the current dataset's test split (not of an older one)."""
    try:
        saved = json.loads((video_dir / "identities.json").read_text())["identities"]
    except (OSError, ValueError, KeyError):
        return False
    return all(int(pid) in people and people[int(pid)].to_dict() == v["attributes"] for pid, v in saved.items())


def step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def main() -> int:
    t_start = time.perf_counter()
    data_dir, video_dir, run_dir, engine = OUT / "synthpedes", OUT / "video", OUT / "run", OUT / "engine"

    step("1. SynthPEDES")
    if _same_config(data_dir / "attributes.json", "config", DATA_CFG):
        print(f"reusing {data_dir}")
        stats = synth.statistics(data_dir)
    else:
        stats = synth.generate(DATA_CFG, data_dir)
    print(synth.format_statistics(stats))

    step("2. Synthetic camera video of the test identities")
    people = synth_video.identities_from_dataset(data_dir, "test")
    if _same_config(video_dir / "identities.json", "config", VIDEO_CFG) and _same_people(video_dir, people):
        print(f"reusing {video_dir}")
        table = json.loads((video_dir / "identities.json").read_text())
    else:
        table = synth_video.generate(VIDEO_CFG, video_dir, people)
    print(synth_video.format_statistics(table, video_dir))

    t = step("3. Train SEN (`small` preset, from scratch)")
    from sen_train.config import load_config
    from sen_train.train import train

    if (run_dir / "results.json").is_file() and (run_dir / "best").is_dir():
        print(f"reusing {run_dir}")
    else:
        train(load_config("small", TRAIN_OVERRIDES), str(data_dir), str(run_dir),
              resume=(run_dir / "last").is_dir())
        print(f"trained in {time.perf_counter() - t:.0f} s")
    results = json.loads((run_dir / "results.json").read_text())

    t = step("4. Export ONNX (fp32 + int8) behind the parity gate")
    from export.onnx import export_engine_dir
    from sen_infer.engine.manifest import ManifestError, read_manifest, sha256_file

    try:
        current = read_manifest(engine).fingerprint == sha256_file(run_dir / "best" / "model.safetensors")
    except ManifestError:
        current = False
    if current:
        print(f"reusing {engine}")
    else:
        export_engine_dir(run_dir / "best", engine, int8=True, force=True)
    manifest = read_manifest(engine)
    for p in manifest.precisions:
        f = manifest.parity[p]
        print(f"{p}: min cosine image {f['image_min_cosine']:.5f} / text {f['text_min_cosine']:.5f}")

    t = step("5. Ingest the camera videos")
    from sen_infer import Retriever
    from sen_infer.vision.tracking import iou

    r = Retriever(engine)
    print(f"backend: {r.backend}")
    for cam, info in table["cameras"].items():
        # the synthetic cameras are cartoons, which the neural detector (the default where installed) does
        # not see: their own best pipeline is background subtraction split into people (docs/benchmarks.md)
        rep = r.gallery.add_video(video_dir / info["video"], camera=cam, start_time=info["start_time"],
                                  detector="mog2-split")
        print(f"{cam}: {rep.tracks} tracks from {rep.frames} frames in {rep.seconds:.1f} s"
              + (" (already ingested)" if rep.skipped_existing else ""))
    stats = r.gallery.stats()
    print(f"gallery: {stats['rows']} tracks, cameras {stats['cameras']}")
    links = r.gallery.link_identities()
    print(f"identities: {links['tracks']} tracks linked into {links['persons']} persons across cameras "
          f"(threshold {links['threshold']:g})")

    step("6. Text queries")
    import numpy as np

    track_pid = {t["track"]: t["pid"] for t in table["tracks"]}
    gt = {cam: np.loadtxt(video_dir / info["ground_truth"], delimiter=",", ndmin=2)
          for cam, info in table["cameras"].items()}

    def who(hit):
        rows = gt[hit.camera][gt[hit.camera][:, 0] == hit.frame + 1]
        best = max(((iou(hit.bbox, tuple(int(v) for v in g[2:6])), int(g[1])) for g in rows), default=(0, None))
        return track_pid.get(best[1]) if best[0] > 0.5 else None

    seen = sorted({t["pid"] for t in table["tracks"]})[:3]
    from sen_infer.cli.sheet import contact_sheet

    for i, pid in enumerate(seen, 1):
        query = table["identities"][str(pid)]["captions"][0]
        hits = r.query(query, k=5)
        print(f"\nquery {i} (identity {pid}): \"{query}\"")
        for rank, h in enumerate(hits, 1):
            truth = who(h)
            mark = "<- match" if truth == pid else ""
            print(f"  {rank}. score {h.score:.3f}  {h.camera}  t={time.strftime('%H:%M:%S', time.gmtime(h.timestamp))}"
                  f"  track {h.track}  person {h.person}  ground truth: {truth if truth is not None else '?'}  {mark}")
        seen_at = r.timeline(hits[0].person)
        print(f"  the top hit's person was seen {len(seen_at)} time(s): " + "; ".join(
            f"{a.camera} {time.strftime('%H:%M:%S', time.gmtime(a.start))}-{time.strftime('%H:%M:%S', time.gmtime(a.end))}"
            for a in seen_at))
        sheet = OUT / f"query{i}.png"
        contact_sheet(r.query(query, k=10), str(sheet), title=query)
        print(f"  contact sheet -> {sheet}")

    real_footage(engine)

    step("7. Test-split metrics of the trained model (SynthPEDES test identities)")
    from sen_train.metrics import format_table

    print(format_table(results["test"]))
    print(f"\ndone in {time.perf_counter() - t_start:.0f} s: outputs under {OUT.resolve()}")
    print(f"\nsearch the demo's gallery in a browser: make serve   (that is: python -m sen_infer serve --engine {engine} "
          f"--port 8080, then open http://127.0.0.1:8080/)")
    return 0


def real_footage(engine: Path) -> None:
    """Step 6b: where the team's real footage is at hand (../shared/data/realmot, absent in a user's clone)
    and the neural detector installed, ingest it with the default pipeline into a gallery of its own and
    write a contact sheet of what was stored: whole people, one per crop, each with its crop score."""
    from sen_infer.cli.sheet import contact_sheet
    from sen_infer.errors import DetectorUnavailable
    from sen_infer.vision.ssdlite import graph_path

    real = Path(__file__).resolve().parents[2] / "shared" / "data" / "realmot" / "pets-s3mf1" / "pets.avi"
    if not real.is_file():
        print(f"\n(no real footage at {real}: step 6b skipped)")
        return
    try:
        graph_path()
    except DetectorUnavailable as e:
        print(f"\n(step 6b skipped: {e})")
        return
    step("6b. Real footage (PETS 2009) with the default pipeline: the neural detector, tiles, motion tracker")
    from sen_infer import Retriever

    r = Retriever(engine, gallery=OUT / "real_gallery")
    rep = r.gallery.add_video(real, camera="pets-view1")
    print(f"pets-view1: {rep.tracks} tracks from {rep.frames} frames in {rep.seconds:.1f} s"
          + (" (already ingested)" if rep.skipped_existing else ""))
    hits = r.query("a person walking", k=30)
    scores = [h.quality for h in hits if h.quality is not None]
    print(f"stored crops: {len(r.gallery)}; crop quality {min(scores):.2f} to {max(scores):.2f}" if scores else
          f"stored crops: {len(r.gallery)}")
    sheet = OUT / "real_crops.png"
    contact_sheet(hits, str(sheet), title="PETS S3-MF1: the crops stored")
    print(f"  contact sheet -> {sheet} (the demo model learned cartoons: look at the crops, not their order)")


if __name__ == "__main__":
    sys.exit(main())
