"""The main job on embedded defaults: make the data the pipeline runs on and print its statistics.

Steps (each reused when its output already exists with the same settings):
  1. SynthPEDES: a small text-to-person dataset in the CUHK-PEDES format;
  2. synthetic surveillance video of the test-split identities, two cameras, with MOT ground truth.
Later stages (train -> export -> ingest -> query) extend this script as they land.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sen_train.data import synth, synth_video  # noqa: E402

OUT = Path("demo_out")
DATA_CFG = synth.SynthConfig(ids=120, seed=0)
VIDEO_CFG = synth_video.VideoConfig(cameras=2, seconds=20, seed=0)


def _same_config(path: Path, key: str, cfg) -> bool:
    try:
        saved = json.loads(path.read_text())[key]
    except (OSError, ValueError, KeyError):
        return False
    return json.loads(json.dumps(asdict(cfg))) == saved


def main() -> int:
    data_dir, video_dir = OUT / "synthpedes", OUT / "video"
    print("== 1. SynthPEDES", flush=True)
    if _same_config(data_dir / "attributes.json", "config", DATA_CFG):
        print(f"reusing {data_dir}")
        stats = synth.statistics(data_dir)
    else:
        stats = synth.generate(DATA_CFG, data_dir)
    print(synth.format_statistics(stats))

    print("\n== 2. Synthetic camera video (test-split identities)", flush=True)
    if _same_config(video_dir / "identities.json", "config", VIDEO_CFG):
        print(f"reusing {video_dir}")
        table = json.loads((video_dir / "identities.json").read_text())
    else:
        people = synth_video.identities_from_dataset(data_dir, "test")
        table = synth_video.generate(VIDEO_CFG, video_dir, people)
    print(synth_video.format_statistics(table, video_dir))
    first = next(iter(table["identities"].items()))
    print(f"\nexample query for pid {first[0]}: \"{first[1]['captions'][0]}\"")
    print(f"\ndone: outputs under {OUT.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
