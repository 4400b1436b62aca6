"""Published test-split figures to read our own numbers against, per benchmark dataset.

`evaluate` prints them beside its figures when it recognises the dataset. Sources: SEN and IRRA from
the SEN authors' README (Delong-liu-bupt/SEN), RDE (Qin et al., CVPR 2024, "Noisy-Correspondence
Learning for Text-to-Image Person Re-identification") from its paper's tables. All are ViT-B/16
unless the name says otherwise, and all were selected on the test split (the papers' protocol).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Anchor:
    method: str
    backbone: str
    R1: float
    mAP: float


PUBLISHED: dict[str, tuple[Anchor, ...]] = {
    "CUHK-PEDES": (Anchor("IRRA", "CLIP ViT-B/16", 73.38, 66.13), Anchor("SEN", "CLIP ViT-B/16", 75.00, 67.23),
                   Anchor("RDE", "CLIP ViT-B/16", 75.94, 67.56), Anchor("SEN-XL", "CLIP ViT-L/14", 76.64, 69.19)),
    "ICFG-PEDES": (Anchor("IRRA", "CLIP ViT-B/16", 63.46, 38.06), Anchor("SEN", "CLIP ViT-B/16", 64.56, 40.80),
                   Anchor("RDE", "CLIP ViT-B/16", 67.68, 40.06), Anchor("SEN-XL", "CLIP ViT-L/14", 66.76, 44.28)),
    "RSTPReid": (Anchor("IRRA", "CLIP ViT-B/16", 60.20, 47.17), Anchor("SEN", "CLIP ViT-B/16", 61.60, 48.62),
                 Anchor("RDE", "CLIP ViT-B/16", 65.35, 50.88), Anchor("SEN-XL", "CLIP ViT-L/14", 62.70, 49.89)),
}


# Test splits of the benchmarks as published (identities, images): figures stand beside the papers'
# only on the real split, not on another dataset written in the same format (SynthPEDES uses CUHK's).
TEST_SPLITS = {"CUHK-PEDES": (1000, 3074), "ICFG-PEDES": (1000, 19848), "RSTPReid": (200, 1000)}


def benchmark_of(dataset_format: str, test_samples) -> str | None:
    """The benchmark whose published test split `test_samples` is, or None."""
    want = TEST_SPLITS.get(dataset_format)
    if want is None:
        return None
    have = (len({s.pid for s in test_samples}), len({s.image for s in test_samples}))
    return dataset_format if have == want else None


def anchors_for(dataset: str) -> tuple[Anchor, ...]:
    """The published figures for a dataset format name (`read_dataset`'s), or () when there are none."""
    return PUBLISHED.get(dataset, ())


def format_anchors(metrics: dict[str, float], dataset: str) -> str:
    """Our R1/mAP beside the published ones, as terminal lines ('' when the dataset has none)."""
    anchors = anchors_for(dataset)
    if not anchors:
        return ""
    lines = [f"published on {dataset} test (each picked on test: the papers' protocol, optimistic):",
             f"  {'':24} {'R1':>6} {'mAP':>6}",
             f"  {'this checkpoint':24} {metrics['R1']:6.2f} {metrics['mAP']:6.2f}"]
    lines += [f"  {a.method + ' (' + a.backbone + ')':24} {a.R1:6.2f} {a.mAP:6.2f}" for a in anchors]
    return "\n".join(lines)
