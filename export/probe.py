"""The fixed probe set of the parity gate: SynthPEDES people and captions drawn in memory."""

from __future__ import annotations

import cv2
import numpy as np

from sen_train.data.captions import make_caption
from sen_train.data.synth import SynthConfig, plan_identities, render_image


def probe_set(ids: int = 24, images_per_id: int = 2, seed: int = 20240601):
    """(RGB uint8 images, image pids, captions, caption pids); deterministic."""
    cfg = SynthConfig(ids=max(3, ids), seed=seed, images_per_id=images_per_id, split_ratios=(1, 1, 1))
    images, img_pids, captions, txt_pids = [], [], [], []
    for p in plan_identities(cfg):
        for k in range(images_per_id):
            bgr, meta = render_image(p.attributes, cfg, p.pid, k)
            images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            img_pids.append(p.pid)
            captions.append(make_caption(p.attributes, meta["view"], np.random.default_rng([seed, p.pid, k])))
            txt_pids.append(p.pid)
    return images, np.array(img_pids), captions, np.array(txt_pids)
