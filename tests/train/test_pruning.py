"""Pruning augmentation: real spaCy tags, cached once per corpus, and a clear error without a tagger."""

import json
import subprocess
import sys

from sen_train.pruning import prune, pruned_captions

from helpers import ROOT  # noqa: E402


def test_prune_keeps_nouns_adjectives_pronouns():
    tagged = [("A", "DT"), ("woman", "NN"), ("in", "IN"), ("a", "DT"), ("red", "JJ"), ("coat", "NN"),
              ("carrying", "VBG"), ("her", "PRP$"), ("bags", "NNS"), (".", "."), ("She", "PRP"), ("taller", "JJR")]
    assert prune(tagged) == "woman red coat her bags She taller"


def test_tags_are_computed_once_and_cached(tmp_path):
    cache = tmp_path / "pos_tags.json"
    captions = ["A woman in a red coat carrying a black backpack.", "He has short black hair."]
    out = pruned_captions(captions, cache, progress=False)
    assert out[captions[0]] == "woman red coat black backpack"
    assert out[captions[1]] == "He short black hair"
    stamp = cache.stat().st_mtime_ns
    data = json.loads(cache.read_text())
    assert len(data["tags"]) == 2
    again = pruned_captions(captions, cache, progress=False)  # all cached: the file is not rewritten
    assert again == out and cache.stat().st_mtime_ns == stamp


def test_missing_tagger_names_the_extra(tmp_path):
    code = ("import sys; sys.modules['spacy'] = None\n"
            "from sen_train.pruning import pruned_captions, TaggerUnavailable\n"
            "try:\n"
            f"    pruned_captions(['a man'], {str(tmp_path / 'c.json')!r}, progress=False)\n"
            "except TaggerUnavailable as e:\n"
            "    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert "pip install '.[train]'" in r.stdout and "loss.prune_p=0" in r.stdout, r.stderr
