"""SynthPEDES attribute space: what a synthetic person is made of, and how identities are sampled.

The space is designed to be learnable from scratch on a CPU (large, saturated colour regions,
distinct shapes) yet not trivial: captions mention a subset of attributes in varied words, some
identities differ from another in one attribute only (hard negatives), and images vary in pose,
view, scale, lighting, background and occlusion.

The `hard` difficulty adds what makes real captions hard: near colour shades (navy next to blue,
maroon next to red), patterned tops (stripes, checks, a chest print) that only a few pixels show,
and hard negatives that differ by exactly such a fine detail. `standard` draws the same random
numbers as before the hard mode existed, so its datasets are unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import numpy as np

# Named colours (BGR). Names are what captions say; each is far from the others in colour space.
COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (30, 30, 30),
    "white": (235, 235, 235),
    "grey": (128, 128, 128),
    "red": (40, 40, 210),
    "blue": (200, 90, 30),
    "green": (60, 160, 40),
    "yellow": (40, 220, 235),
    "orange": (20, 130, 245),
    "purple": (150, 40, 130),
    "pink": (180, 140, 245),
    "brown": (40, 75, 120),
}
# Shades a `hard` dataset adds: each sits next to a base colour, as "navy" sits next to "blue".
SHADES: dict[str, tuple[int, int, int]] = {
    "navy": (100, 40, 20),
    "light blue": (235, 195, 140),
    "maroon": (40, 25, 120),
    "beige": (165, 205, 225),
    "olive": (40, 120, 115),
    "dark green": (35, 85, 25),
}
# The colour a fine-grained hard negative moves to: the nearest shades a describer would still name apart.
NEAR_COLOURS: dict[str, tuple[str, ...]] = {
    "blue": ("navy", "light blue"), "navy": ("blue", "black"), "light blue": ("blue", "white"),
    "red": ("maroon", "orange", "pink"), "maroon": ("red", "brown", "purple"), "pink": ("red", "purple"),
    "white": ("beige", "grey"), "beige": ("white", "yellow", "brown"), "grey": ("white", "black"),
    "green": ("dark green", "olive"), "dark green": ("green", "black"), "olive": ("green", "brown"),
    "yellow": ("orange", "beige"), "orange": ("red", "yellow"), "purple": ("pink", "maroon"),
    "brown": ("maroon", "beige"), "black": ("navy", "grey"),
}
ALL_COLOURS: dict[str, tuple[int, int, int]] = {**COLOURS, **SHADES}
TOP_PATTERNS = ("plain", "striped", "checked", "logo")
DIFFICULTIES = ("standard", "hard")

HAIR_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (25, 25, 25),
    "brown": (30, 60, 105),
    "blonde": (110, 200, 230),
    "grey": (160, 160, 160),
    "red": (40, 60, 170),
}
SKIN_TONES = ((150, 180, 225), (120, 160, 205), (90, 130, 180), (60, 90, 130))

GENDERS = ("man", "woman")
BODY_SHAPES = ("slim", "average", "heavy")
HAIR_LENGTHS = ("short", "long")
TOP_TYPES = ("t-shirt", "long-sleeve", "jacket", "coat", "hoodie")
BOTTOM_TYPES = ("trousers", "shorts", "skirt")
BAG_TYPES = ("none", "backpack", "shoulder bag", "handbag")
HAT_TYPES = ("none", "cap", "beanie")

# Attributes a hard negative may change (one of them, relative to its base identity).
HARD_NEGATIVE_ATTRIBUTES = (
    "top_colour", "bottom_colour", "top_type", "bottom_type", "bag_type", "bag_colour",
    "hair_colour", "shoe_colour", "hat_type",
)


@dataclass(frozen=True)
class PersonAttributes:
    """Everything that makes an identity look like itself."""

    gender: str
    body: str
    skin: int  # index into SKIN_TONES
    hair_colour: str
    hair_length: str
    top_type: str
    top_colour: str
    bottom_type: str
    bottom_colour: str
    shoe_colour: str
    bag_type: str
    bag_colour: str  # meaningless when bag_type == "none"
    hat_type: str
    hat_colour: str  # meaningless when hat_type == "none"
    glasses: bool
    scarf_colour: str | None
    top_pattern: str = "plain"  # TOP_PATTERNS; only `hard` datasets use the others
    pattern_colour: str | None = None  # stripes / checks / print colour; None when plain

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PersonAttributes":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _pick(rng: np.random.Generator, options, p=None):
    return options[int(rng.choice(len(options), p=p))]


def sample_attributes(rng: np.random.Generator, difficulty: str = "standard") -> PersonAttributes:
    """One random identity; the distributions loosely follow street scenes."""
    hard = check_difficulty(difficulty) == "hard"
    colours = tuple(ALL_COLOURS if hard else COLOURS)
    gender = _pick(rng, GENDERS)
    woman = gender == "woman"
    bottom = _pick(rng, BOTTOM_TYPES, p=(0.5, 0.2, 0.3) if woman else (0.75, 0.25, 0.0))
    bag = _pick(rng, BAG_TYPES, p=(0.3, 0.3, 0.2, 0.2))
    hat = _pick(rng, HAT_TYPES, p=(0.6, 0.25, 0.15))
    a = PersonAttributes(
        gender=gender,
        body=_pick(rng, BODY_SHAPES, p=(0.3, 0.45, 0.25)),
        skin=int(rng.integers(len(SKIN_TONES))),
        hair_colour=_pick(rng, tuple(HAIR_COLOURS), p=(0.4, 0.25, 0.15, 0.1, 0.1)),
        hair_length=_pick(rng, HAIR_LENGTHS, p=(0.3, 0.7) if woman else (0.9, 0.1)),
        top_type=_pick(rng, TOP_TYPES),
        top_colour=_pick(rng, colours),
        bottom_type=bottom,
        bottom_colour=_pick(rng, colours),
        shoe_colour=_pick(rng, ("black", "white", "brown", "grey", "red", "blue")),
        bag_type=bag,
        bag_colour=_pick(rng, colours),
        hat_type=hat,
        hat_colour=_pick(rng, colours),
        glasses=bool(rng.random() < 0.25),
        scarf_colour=_pick(rng, colours) if rng.random() < 0.15 else None,
    )
    if hard:  # drawn after everything else, so `standard` keeps its random stream
        pattern = _pick(rng, TOP_PATTERNS, p=(0.4, 0.25, 0.15, 0.2))
        if pattern != "plain":
            a = replace(a, top_pattern=pattern, pattern_colour=_contrasting(a.top_colour, rng))
    return a


def check_difficulty(difficulty: str) -> str:
    """`difficulty` if it is one of DIFFICULTIES, else a ValueError naming them."""
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {', '.join(DIFFICULTIES)}, got {difficulty!r}")
    return difficulty


def _contrasting(colour: str, rng: np.random.Generator) -> str:
    """A pattern colour that stands out from the garment (white on dark, black on light)."""
    light = sum(ALL_COLOURS[colour]) > 3 * 140
    pool = ("black", "navy", "red") if light else ("white", "yellow", "light blue")
    return _pick(rng, tuple(c for c in pool if c != colour and c not in NEAR_COLOURS[colour]))


def hard_negative(base: PersonAttributes, rng: np.random.Generator,
                  difficulty: str = "standard") -> tuple[PersonAttributes, str]:
    """A new identity equal to `base` but for one attribute; returns it and the attribute's name.

    In `hard` datasets the change is fine-grained: a colour moves to a near shade (blue -> navy) or
    the top's pattern changes, the differences real describers still put into words."""
    if check_difficulty(difficulty) == "hard":
        return _fine_grained_negative(base, rng)
    for _ in range(100):
        name = _pick(rng, HARD_NEGATIVE_ATTRIBUTES)
        if name.endswith("_colour"):
            pool = tuple(HAIR_COLOURS) if name == "hair_colour" else tuple(COLOURS)
        else:
            pool = {"top_type": TOP_TYPES, "bottom_type": BOTTOM_TYPES,
                    "bag_type": BAG_TYPES, "hat_type": HAT_TYPES}[name]
        if name == "bag_colour" and base.bag_type == "none":
            continue
        if name == "bottom_type" and base.gender == "man":
            pool = ("trousers", "shorts")
        value = _pick(rng, tuple(v for v in pool if v != getattr(base, name)))
        return replace(base, **{name: value}), name
    raise RuntimeError("no attribute could be changed")  # unreachable: top_colour always can


def _fine_grained_negative(base: PersonAttributes, rng: np.random.Generator) -> tuple[PersonAttributes, str]:
    options = ["top_colour", "bottom_colour", "top_pattern", "top_pattern"]
    if base.bag_type != "none":
        options.append("bag_colour")
    name = _pick(rng, tuple(options))
    if name == "top_pattern":
        pattern = _pick(rng, tuple(p for p in TOP_PATTERNS if p != base.top_pattern))
        colour = None if pattern == "plain" else (base.pattern_colour or _contrasting(base.top_colour, rng))
        return replace(base, top_pattern=pattern, pattern_colour=colour), name
    value = _pick(rng, NEAR_COLOURS[getattr(base, name)])
    changed = replace(base, **{name: value})
    if name == "top_colour" and changed.pattern_colour == value:  # keep the pattern visible
        changed = replace(changed, pattern_colour=_contrasting(value, rng))
    return changed, name
