"""Procedural drawing of SynthPEDES people and scenes with OpenCV.

`render_person` draws one person at a given pixel height into a colour layer plus a mask, so the
same figure can be pasted into a 384x128 dataset crop or walk through a camera scene.
Coordinates inside a person are in units of the person's height (0 = top of head, 1 = soles).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from sen_train.data.attributes import ALL_COLOURS, COLOURS, HAIR_COLOURS, SKIN_TONES, PersonAttributes

PERSON_ASPECT = 0.5  # canvas width / height: room for swinging arms and bags


@dataclass(frozen=True)
class Pose:
    view: str = "front"  # "front" (facing the camera) or "back"
    phase: float = 0.0  # walking cycle phase, radians


class _Painter:
    """Draws each primitive into the colour layer and the mask at once."""

    def __init__(self, height: int):
        self.h = height
        self.w = max(8, int(round(height * PERSON_ASPECT)))
        self.cx = self.w / 2.0
        self.img = np.zeros((height, self.w, 3), np.uint8)
        self.mask = np.zeros((height, self.w), np.uint8)

    def p(self, dx: float, fy: float) -> tuple[int, int]:
        return int(round(self.cx + dx * self.h)), int(round(fy * self.h))

    def t(self, frac: float) -> int:
        return max(1, int(round(frac * self.h)))

    def poly(self, pts, colour):
        arr = np.array([self.p(x, y) for x, y in pts], np.int32)
        cv2.fillPoly(self.img, [arr], colour)
        cv2.fillPoly(self.mask, [arr], 255)

    def line(self, a, b, thickness, colour):
        pa, pb, th = self.p(*a), self.p(*b), self.t(thickness)
        cv2.line(self.img, pa, pb, colour, th)
        cv2.line(self.mask, pa, pb, 255, th)

    def ellipse(self, centre, axes, colour, start=0, end=360):
        c = self.p(*centre)
        ax = (self.t(axes[0]), self.t(axes[1]))
        cv2.ellipse(self.img, c, ax, 0, start, end, colour, -1)
        cv2.ellipse(self.mask, c, ax, 0, start, end, 255, -1)

    def pattern(self, pts, kind: str, colour, front: bool, y_top: float):
        """Stripes, checks or a chest print inside polygon `pts` (the print only shows from the front)."""
        region = np.zeros_like(self.mask)
        cv2.fillPoly(region, [np.array([self.p(x, y) for x, y in pts], np.int32)], 255)
        marks = np.zeros_like(self.mask)
        period, width = max(3, self.t(0.045)), max(1, self.t(0.015))
        if kind in ("striped", "checked"):
            for y in range(self.p(0, y_top)[1] + period // 2, self.h, period):
                cv2.line(marks, (0, y), (self.w, y), 255, width)
        if kind == "checked":
            for x in range(int(self.cx) % period, self.w, period):
                cv2.line(marks, (x, 0), (x, self.h), 255, width)
        if kind == "logo" and front:
            cv2.circle(marks, self.p(0, y_top + 0.09), self.t(0.03), 255, -1)
        self.img[(marks > 0) & (region > 0)] = colour

    def rect(self, x0, y0, x1, y1, colour):
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], colour)


# long: one figure drawn back to front (legs, torso, bag, arms, head, hat), each part reading the previous
# parts' geometry; split into helpers it would thread a dozen coordinates through every call
def render_person(a: PersonAttributes, pose: Pose, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw person `a` in `pose`, `height` pixels tall. Returns (BGR uint8 [h,w,3], mask uint8 [h,w])."""
    g = _Painter(height)
    front = pose.view == "front"
    woman = a.gender == "woman"
    b = {"slim": 0.85, "average": 1.0, "heavy": 1.25}[a.body]
    sw = 0.085 * b * (0.88 if woman else 1.0)  # shoulder half-width
    hw = 0.07 * b * (1.08 if woman else 1.0)  # hip half-width
    stride = 0.05 * math.sin(pose.phase)
    swing = -0.035 * math.sin(pose.phase)
    skin = SKIN_TONES[a.skin]
    hair = HAIR_COLOURS[a.hair_colour]
    top = ALL_COLOURS[a.top_colour]
    bottom = ALL_COLOURS[a.bottom_colour]
    bag = ALL_COLOURS[a.bag_colour]
    y_sh, y_hip, y_knee, y_ankle = 0.17, 0.50, 0.68, 0.93
    long_hair = a.hair_length == "long"

    if long_hair and front:  # hair falling behind the shoulders
        g.rect(-0.055, 0.06, 0.055, 0.25, hair)
    if a.bag_type == "backpack" and front:  # the pack shows either side of the torso
        g.rect(-sw - 0.025, 0.19, sw + 0.025, 0.42, bag)
    if a.top_type == "hoodie":  # hood lying around the neck
        g.ellipse((0, 0.15), (0.065, 0.035), top)

    # Legs: one stroke per leg; the bottom garment colours the upper part.
    leg_w = 0.05 * b
    for side, step in ((-1, stride), (1, -stride)):
        hip = (side * hw * 0.55, y_hip)
        knee = (side * hw * 0.55 + step * 0.5, y_knee)
        ankle = (side * hw * 0.55 + step, y_ankle)
        if a.bottom_type == "trousers":
            g.line(hip, knee, leg_w, bottom)
            g.line(knee, ankle, leg_w * 0.9, bottom)
        elif a.bottom_type == "shorts":
            g.line(hip, knee, leg_w, skin)
            g.line(knee, ankle, leg_w * 0.8, skin)
            g.line(hip, (hip[0] + step * 0.25, 0.63), leg_w * 1.15, bottom)
        else:  # skirt: bare legs, skirt drawn over the hips below
            g.line(hip, knee, leg_w * 0.85, skin)
            g.line(knee, ankle, leg_w * 0.75, skin)
        g.ellipse((ankle[0] + 0.01 * side, 0.955), (0.032, 0.022), COLOURS[a.shoe_colour])

    # Arms at the sides, swinging against the legs.
    arm_w = 0.034 * b
    for side, s in ((-1, swing), (1, -swing)):
        shoulder = (side * (sw - 0.01), y_sh + 0.01)
        elbow = (side * (sw + 0.012) + s * 0.5, 0.34)
        hand = (side * (sw + 0.018) + s, 0.49)
        g.line(shoulder, elbow, arm_w, top)
        g.line(elbow, hand, arm_w * 0.9, skin if a.top_type == "t-shirt" else top)  # short sleeves
        g.ellipse((hand[0], hand[1] + 0.01), (0.018, 0.018), skin)
        if a.bag_type == "handbag" and side == 1:
            g.rect(hand[0] - 0.035, hand[1] + 0.02, hand[0] + 0.035, hand[1] + 0.10, bag)

    # Torso; coats reach below the hips and flare.
    if a.bottom_type == "skirt":
        g.poly([(-hw, y_hip - 0.03), (hw, y_hip - 0.03), (hw + 0.04, 0.69), (-hw - 0.04, 0.69)], bottom)
    hem = 0.72 if a.top_type == "coat" else y_hip + 0.01
    flare = 0.025 if a.top_type == "coat" else 0.0
    torso = [(-sw, y_sh), (sw, y_sh), (hw + flare, hem), (-hw - flare, hem)]
    g.poly(torso, top)
    if a.top_pattern != "plain":
        g.pattern(torso, a.top_pattern, ALL_COLOURS[a.pattern_colour], front, y_sh)
    if a.top_type == "jacket" and front:  # open front shows the shirt underneath
        inner = COLOURS["white"] if a.top_colour != "white" else COLOURS["black"]
        g.poly([(-0.02, y_sh), (0.02, y_sh), (0.025, hem), (-0.025, hem)], inner)
    if a.top_type == "coat" and front:
        g.line((0, y_sh + 0.02), (0, hem), 0.006, COLOURS["black"])
    if a.top_type == "hoodie" and front:  # kangaroo pocket
        darker = tuple(int(c * 0.7) for c in top)
        g.rect(-hw * 0.7, 0.40, hw * 0.7, 0.47, darker)

    if a.bag_type == "shoulder bag":
        g.line((sw * 0.8, y_sh), (-hw * 0.9, 0.47), 0.012, bag)
        g.rect(-hw - 0.055, 0.44, -hw + 0.02, 0.55, bag)
    if a.bag_type == "backpack":
        if front:
            for side in (-1, 1):
                g.line((side * sw * 0.55, y_sh), (side * sw * 0.6, 0.36), 0.014, bag)
        else:
            g.rect(-sw * 0.9, 0.19, sw * 0.9, 0.45, bag)

    g.rect(-0.022, 0.12, 0.022, 0.17, skin)  # neck
    if a.scarf_colour is not None:
        scarf = ALL_COLOURS[a.scarf_colour]
        g.rect(-0.045, 0.145, 0.045, 0.185, scarf)
        g.rect(0.01, 0.17, 0.035, 0.27, scarf)

    # Head: a face from the front, hair from behind.
    g.ellipse((0, 0.075), (0.042, 0.058), skin if front else hair)
    if front:
        g.ellipse((0, 0.06), (0.044, 0.045), hair, 180, 360)  # hair on top
        if long_hair:
            g.rect(-0.05, 0.04, -0.032, 0.20, hair)
            g.rect(0.032, 0.04, 0.05, 0.20, hair)
        if a.glasses:
            for side in (-1, 1):
                g.ellipse((side * 0.016, 0.075), (0.012, 0.008), COLOURS["black"])
    elif long_hair:
        g.poly([(-0.045, 0.06), (0.045, 0.06), (0.055, 0.25), (-0.055, 0.25)], hair)

    if a.hat_type != "none":
        hat = ALL_COLOURS[a.hat_colour]
        if a.hat_type == "cap":
            g.ellipse((0, 0.05), (0.047, 0.035), hat, 180, 360)
            if front:
                g.rect(-0.05, 0.045, 0.05, 0.058, hat)
        else:  # beanie: a taller, rounded dome
            g.ellipse((0, 0.06), (0.048, 0.05), hat, 180, 360)
            g.rect(-0.048, 0.05, 0.048, 0.065, hat)
    return g.img, g.mask


def paste(dst: np.ndarray, person: np.ndarray, mask: np.ndarray, x_centre: float, y_bottom: float,
          label: np.ndarray | None = None, label_value: int = 0) -> tuple[int, int, int, int]:
    """Paste a person (clipped to `dst`) with its feet at (x_centre, y_bottom).

    Returns the full-extent box (x, y, w, h) of the figure in `dst` coordinates, which may reach
    outside `dst`. If `label` is given, the pasted pixels are set to `label_value` there.
    """
    ph, pw = mask.shape
    x0 = int(round(x_centre - pw / 2))
    y0 = int(round(y_bottom - ph))
    H, W = dst.shape[:2]
    sx0, sy0 = max(0, -x0), max(0, -y0)
    dx0, dy0 = max(0, x0), max(0, y0)
    dx1, dy1 = min(W, x0 + pw), min(H, y0 + ph)
    if dx1 > dx0 and dy1 > dy0:
        src = (slice(sy0, sy0 + dy1 - dy0), slice(sx0, sx0 + dx1 - dx0))
        m = mask[src]
        region = dst[dy0:dy1, dx0:dx1]
        cv2.copyTo(person[src], m, region)
        if label is not None:
            np.copyto(label[dy0:dy1, dx0:dx1], label_value, where=m > 0)
    bx, by, bw, bh = cv2.boundingRect(mask)
    return x0 + bx, y0 + by, bw, bh


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """A fixed field of Gaussian noise (sigma 16, int16); random crops beat fresh draws by 10x."""
    rng = np.random.default_rng(12345)
    return np.round(rng.standard_normal((1024, 1024, 3), dtype=np.float32) * 16).astype(np.int16)


def add_noise(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """`img` (uint8) plus Gaussian noise of std `sigma`, saturated, from a random crop of the bank."""
    bank = _noise_bank()
    h, w = img.shape[:2]
    reps_y, reps_x = -(-h // bank.shape[0]), -(-w // bank.shape[1])
    if reps_y > 1 or reps_x > 1:  # frames larger than the bank: tile it
        bank = np.tile(bank, (reps_y + 1, reps_x + 1, 1))
    y = int(rng.integers(0, bank.shape[0] - h + 1))
    x = int(rng.integers(0, bank.shape[1] - w + 1))
    return cv2.addWeighted(img.astype(np.int16), 1.0, bank[y : y + h, x : x + w], sigma / 16, 0, dtype=cv2.CV_8U)


def make_background(rng: np.random.Generator, height: int, width: int, clutter: int = 4) -> np.ndarray:
    """A muted street-like backdrop: wall gradient, ground plane, a few blocks, sensor noise."""
    def muted():
        return np.clip(rng.uniform(60, 190) + rng.uniform(-25, 25, size=3), 0, 255)

    wall, ground = muted(), muted() * 0.8
    horizon = int(height * rng.uniform(0.55, 0.8))
    ramp = np.linspace(1.1, 0.85, height)[:, None]
    rows = np.where(np.arange(height)[:, None] < horizon, wall[None] * ramp, ground[None] * ramp)
    img = np.repeat(np.clip(rows, 0, 255).astype(np.uint8)[:, None, :], width, axis=1)
    for _ in range(int(rng.integers(clutter // 2, clutter + 1))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, horizon))
        x1 = min(width, x0 + int(rng.integers(width // 10 + 1, width // 2 + 2)))
        y1 = min(horizon, y0 + int(rng.integers(height // 10 + 1, height // 2 + 2)))
        cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), [float(c) for c in muted()], -1)
    return add_noise(img, rng, 4)


def adjust_lighting(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera variation: global gain, a colour cast, noise and sometimes a slight blur."""
    gain = rng.uniform(0.7, 1.25)
    cast = rng.normal(0, 8, size=3)
    levels = np.arange(256, dtype=np.float32)[:, None] * gain + cast[None]
    lut = np.clip(levels, 0, 255).astype(np.uint8).reshape(256, 1, 3)
    out = add_noise(cv2.LUT(img, lut), rng, rng.uniform(2, 6))
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (3, 3), 0)
    return out
