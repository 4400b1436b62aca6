"""Captions for SynthPEDES images, in the varied phrasing of crowd-sourced person descriptions.

Each caption names a random subset of the visible attributes (top and bottom nearly always), with
synonyms, shuffled clause order, one of several sentence styles, and sometimes a distractor clause
that carries no identity information, as real annotators write.
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
DISTRACTORS_FRONT = ("{P} is walking towards the camera.", "{P} seems to be in a hurry.",
                     "{P} is looking ahead.", "The picture is a little blurry.")
DISTRACTORS_BACK = ("{P} is walking away from the camera.", "{P} walks along the street.",
                    "{P} is seen from behind.", "The picture is a little blurry.")


def _a(rng, options):
    return options[int(rng.integers(len(options)))]


def _colour(rng, name: str) -> str:
    return _a(rng, COLOUR_SYNONYMS.get(name, (name,)))


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _clauses(a: PersonAttributes, view: str, rng: np.random.Generator) -> list[tuple[str, str]]:
    """(kind, noun phrase) pairs; kind says which verb introduces the phrase."""
    pos = "his" if a.gender == "man" else "her"
    out: list[tuple[str, str]] = []
    top = f"{_colour(rng, a.top_colour)} {_a(rng, TOP_NAMES[a.top_type])}"
    out.append(("wear", f"{_article(top)} {top}"))
    bottom_name = _a(rng, BOTTOM_NAMES[a.bottom_type])
    bottom = f"{_colour(rng, a.bottom_colour)} {bottom_name}"
    if a.bottom_type == "skirt":
        out.append(("wear", f"{_article(bottom)} {bottom}"))
    else:
        out.append(("wear", _a(rng, (bottom, f"a pair of {bottom}"))))
    if rng.random() < 0.8:
        hair = f"{a.hair_length} {a.hair_colour} hair"
        out.append(("have", hair))
    if rng.random() < 0.6:
        shoes = f"{_colour(rng, a.shoe_colour)} {_a(rng, SHOE_NAMES)}"
        out.append(("wear", _a(rng, (shoes, f"a pair of {shoes}"))))
    if a.bag_type != "none" and rng.random() < 0.95:
        bag = f"{_colour(rng, a.bag_colour)} {_a(rng, BAG_NAMES[a.bag_type])}"
        where = {"backpack": f" on {pos} back", "shoulder bag": "", "handbag": f" in {pos} hand"}
        out.append(("carry", f"{_article(bag)} {bag}{where[a.bag_type] if rng.random() < 0.4 else ''}"))
    if a.hat_type != "none" and rng.random() < 0.9:
        hat = f"{_colour(rng, a.hat_colour)} {_a(rng, HAT_NAMES[a.hat_type])}"
        out.append(("wear", f"{_article(hat)} {hat}"))
    if a.glasses and view == "front" and rng.random() < 0.8:
        out.append(("wear", _a(rng, ("glasses", "a pair of glasses", "spectacles"))))
    if a.scarf_colour is not None and rng.random() < 0.8:
        scarf = f"{_colour(rng, a.scarf_colour)} scarf"
        out.append(("wear", f"{_article(scarf)} {scarf}"))
    first, rest = out[:2], out[2:]
    rng.shuffle(rest)
    if rng.random() < 0.3:  # sometimes the bottom is named first
        first = first[::-1]
    return first + rest


def make_caption(a: PersonAttributes, view: str, rng: np.random.Generator) -> str:
    """One caption for an image of `a` seen from `view`."""
    he = "he" if a.gender == "man" else "she"
    subject = _a(rng, SUBJECTS[a.gender])
    clauses = _clauses(a, view, rng)
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
    return text[0].upper() + text[1:]
