"""Captions for SynthPEDES images, in the varied phrasing of crowd-sourced person descriptions.

Each caption names a random subset of the visible attributes (top and bottom nearly always), with
synonyms, shuffled clause order, one of several sentence styles, and sometimes a distractor clause
that carries no identity information, as real annotators write.

`hard=True` (the `hard` SynthPEDES difficulty) adds the rest of what makes real captions hard:
shade names with their own synonyms (navy / dark blue), patterned tops described several ways
("a white and navy striped tee", "a navy tee with white stripes"), colour after the noun
("trousers in black"), fewer attributes per caption, and annotator typos (a letter swapped or
dropped in about 3% of the longer words).
"""

from __future__ import annotations

import numpy as np

from sen_train.data.attributes import PersonAttributes

SUBJECTS = {
    "man": ("The man", "A man", "This man", "The guy", "A male pedestrian", "The young man",
            "This person", "The pedestrian"),
    "woman": ("The woman", "A woman", "This lady", "The girl", "A female pedestrian",
              "The young woman", "This person", "The pedestrian"),
}
TOP_NAMES = {
    "t-shirt": ("t-shirt", "tee", "short-sleeved shirt", "short sleeve top"),
    "long-sleeve": ("long-sleeved shirt", "long sleeve top", "sweater", "shirt with long sleeves"),
    "jacket": ("jacket", "zip-up jacket", "open jacket"),
    "coat": ("long coat", "coat", "overcoat"),
    "hoodie": ("hoodie", "hooded sweatshirt"),
}
BOTTOM_NAMES = {
    "trousers": ("pants", "trousers", "long pants", "slacks"),
    "shorts": ("shorts", "short pants"),
    "skirt": ("skirt", "knee-length skirt"),
}
SHOE_NAMES = ("shoes", "sneakers", "trainers")
BAG_NAMES = {
    "backpack": ("backpack", "rucksack"),
    "shoulder bag": ("shoulder bag", "messenger bag", "bag over the shoulder"),
    "handbag": ("handbag", "hand bag", "purse"),
}
HAT_NAMES = {"cap": ("cap", "baseball cap"), "beanie": ("beanie", "knit hat", "woolly hat")}
COLOUR_SYNONYMS = {"grey": ("grey", "gray"), "purple": ("purple", "violet")}
SHADE_SYNONYMS = {  # used by hard captions only
    "navy": ("navy", "navy blue", "dark blue"), "light blue": ("light blue", "sky blue", "pale blue"),
    "maroon": ("maroon", "burgundy", "dark red"), "beige": ("beige", "cream", "tan"),
    "olive": ("olive", "olive green", "khaki"), "dark green": ("dark green", "forest green"),
    "red": ("red", "bright red"), "blue": ("blue", "bright blue"),
}
PATTERN_PHRASES = {  # {c}: garment colour, {p}: pattern colour, {n}: garment noun
    "striped": ("{c} and {p} striped {n}", "{c} {n} with {p} stripes", "striped {c} {n}"),
    "checked": ("{c} and {p} plaid {n}", "{c} checked {n}", "{c} {n} with a {p} check pattern"),
    "logo": ("{c} {n} with a {p} logo", "{c} {n} with a {p} print on the front", "{c} {n} with a round {p} logo"),
}
DISTRACTORS_FRONT = ("{P} is walking towards the camera.", "{P} seems to be in a hurry.",
                     "{P} is looking ahead.", "The picture is a little blurry.")
DISTRACTORS_BACK = ("{P} is walking away from the camera.", "{P} walks along the street.",
                    "{P} is seen from behind.", "The picture is a little blurry.")


def _a(rng, options):
    return options[int(rng.integers(len(options)))]


def _colour(rng, name: str, hard: bool = False) -> str:
    if hard and name in SHADE_SYNONYMS:
        return _a(rng, SHADE_SYNONYMS[name])
    return _a(rng, COLOUR_SYNONYMS.get(name, (name,)))


def _garment(rng, colour: str, noun: str, hard: bool) -> str:
    """'red t-shirt', or in hard captions sometimes the colour after the noun: 't-shirt in red'."""
    c = _colour(rng, colour, hard)
    if hard and rng.random() < 0.25:
        return f"{noun} {_a(rng, ('in', 'coloured'))} {c}" if rng.random() < 0.8 else f"{noun} of {c} colour"
    return f"{c} {noun}"


def _top(rng, a: PersonAttributes, view: str, hard: bool) -> str:
    noun = _a(rng, TOP_NAMES[a.top_type])
    visible = a.top_pattern != "plain" and (a.top_pattern != "logo" or view == "front")
    if not (hard and visible and rng.random() < 0.85):  # describers sometimes skip the pattern
        return _garment(rng, a.top_colour, noun, hard)
    phrase = _a(rng, PATTERN_PHRASES[a.top_pattern])
    return phrase.format(c=_colour(rng, a.top_colour, True), p=_colour(rng, a.pattern_colour, True), n=noun)


def add_typos(text: str, rng: np.random.Generator, rate: float = 0.03) -> str:
    """Swap two inner letters or drop one in about `rate` of the words of 5+ letters."""
    words = text.split(" ")
    for i, w in enumerate(words):
        if len(w) >= 5 and w.isalpha() and rng.random() < rate:
            k = int(rng.integers(1, len(w) - 2))
            words[i] = w[:k] + w[k + 1] + w[k] + w[k + 2:] if rng.random() < 0.5 else w[:k] + w[k + 1:]
    return " ".join(words)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _clauses(a: PersonAttributes, view: str, rng: np.random.Generator, hard: bool = False) -> list[tuple[str, str]]:
    """(kind, noun phrase) pairs; kind says which verb introduces the phrase."""
    pos = "his" if a.gender == "man" else "her"
    out: list[tuple[str, str]] = []
    if hard:
        top = _top(rng, a, view, hard)
    else:  # the exact random draws of the standard captions
        top = f"{_colour(rng, a.top_colour)} {_a(rng, TOP_NAMES[a.top_type])}"
    out.append(("wear", f"{_article(top)} {top}"))
    bottom_name = _a(rng, BOTTOM_NAMES[a.bottom_type])
    bottom = _garment(rng, a.bottom_colour, bottom_name, hard)
    if a.bottom_type == "skirt":
        out.append(("wear", f"{_article(bottom)} {bottom}"))
    else:
        out.append(("wear", _a(rng, (bottom, f"a pair of {bottom}"))))
    if rng.random() < (0.6 if hard else 0.8):
        hair = f"{a.hair_length} {a.hair_colour} hair"
        out.append(("have", hair))
    if rng.random() < (0.4 if hard else 0.6):
        shoes = f"{_colour(rng, a.shoe_colour)} {_a(rng, SHOE_NAMES)}"
        out.append(("wear", _a(rng, (shoes, f"a pair of {shoes}"))))
    if a.bag_type != "none" and rng.random() < (0.85 if hard else 0.95):
        bag = f"{_colour(rng, a.bag_colour, hard)} {_a(rng, BAG_NAMES[a.bag_type])}"
        where = {"backpack": f" on {pos} back", "shoulder bag": "", "handbag": f" in {pos} hand"}
        out.append(("carry", f"{_article(bag)} {bag}{where[a.bag_type] if rng.random() < 0.4 else ''}"))
    if a.hat_type != "none" and rng.random() < 0.9:
        hat = f"{_colour(rng, a.hat_colour, hard)} {_a(rng, HAT_NAMES[a.hat_type])}"
        out.append(("wear", f"{_article(hat)} {hat}"))
    if a.glasses and view == "front" and rng.random() < 0.8:
        out.append(("wear", _a(rng, ("glasses", "a pair of glasses", "spectacles"))))
    if a.scarf_colour is not None and rng.random() < 0.8:
        scarf = f"{_colour(rng, a.scarf_colour, hard)} scarf"
        out.append(("wear", f"{_article(scarf)} {scarf}"))
    first, rest = out[:2], out[2:]
    rng.shuffle(rest)
    if rng.random() < 0.3:  # sometimes the bottom is named first
        first = first[::-1]
    return first + rest


def make_caption(a: PersonAttributes, view: str, rng: np.random.Generator, hard: bool = False) -> str:
    """One caption for an image of `a` seen from `view` (`hard`: see the module docstring)."""
    he = "he" if a.gender == "man" else "she"
    subject = _a(rng, SUBJECTS[a.gender])
    clauses = _clauses(a, view, rng, hard)
    style = int(rng.integers(3))
    verbs = {"wear": ("wearing", "is wearing", "has on", "is dressed in"),
             "have": ("with", "has", "has got"),
             "carry": ("carrying", "is carrying", "has")}
    if style == 0:  # one long sentence: "A man wearing X, Y and Z, carrying W."
        parts = []
        last_kind = None
        for kind, phrase in clauses:
            parts.append(phrase if kind == last_kind else f"{verbs[kind][0]} {phrase}")
            last_kind = kind
        body = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]
        text = f"{subject} {body}."
    elif style == 1:  # several short sentences
        sentences = []
        for i, (kind, phrase) in enumerate(clauses):
            who = subject if i == 0 else _a(rng, (he.capitalize(), "The person"))
            sentences.append(f"{who} {_a(rng, verbs[kind][1:])} {phrase}.")
        text = " ".join(sentences)
    else:  # terse: "A woman in a red coat and black pants, with a blue backpack."
        worn = [p for k, p in clauses if k == "wear"]
        other = [f"{verbs[k][0]} {p}" for k, p in clauses if k != "wear"]
        text = f"{subject} in {' and '.join(worn)}"
        text += (", " + ", ".join(other) if other else "") + "."
    if rng.random() < 0.3:
        distractors = DISTRACTORS_FRONT if view == "front" else DISTRACTORS_BACK
        text += " " + _a(rng, distractors).format(P=he.capitalize())
    if hard:
        text = add_typos(text, rng)
    return text[0].upper() + text[1:]
