"""sen_infer's torch-free tokenizer gives exactly open_clip's ids."""

import numpy as np
import open_clip
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from export.tokenizer import build_tokenizer_json
from sen_infer.engine.tokenizer import ClipTokenizer
from sen_infer.errors import TokenizerError

CORPUS = [
    "A woman in a RED coat carrying a black backpack.",
    "",
    "   ",
    "café, naïve résumé — Ångström; Straße; ÉLÈVE",
    "emoji 😀👍🏽 🇫🇷 ❤️ test",
    "&amp;lt;b&amp;gt;bold&amp;lt;/b&amp;gt; &quot;quoted&quot; &#39;x&#39; &nbsp;",
    "   odd\t\twhite\u00a0space\u2003and\nnew\r\nlines   ",
    "UPPER CASE AND MiXeD cAsE",
    "!!!??? ... --- *** ((()))",
    "don't I'll it's we've you're they'd I'm",
    "<end_of_text> and <start_of_text> inside",
    "123 4567 3.14 1,000,000",
    "the man " * 60,  # over 77 tokens: truncated with end-of-text last
    "supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis",
    "日本語のテキスト 中文 한국어 العربية עברית",
    "tab\tseparated\tvalues",
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = build_tokenizer_json(tmp_path_factory.mktemp("tok") / "tokenizer.json")
    return ClipTokenizer(path)


def test_corpus_matches_open_clip(tokenizer):
    ours = tokenizer(CORPUS, pad_to=77)
    ref = open_clip.tokenize(CORPUS).numpy()
    for i, text in enumerate(CORPUS):
        assert ours[i].tolist() == ref[i].tolist(), text


def test_long_caption_keeps_end_of_text_last(tokenizer):
    ids, truncated = tokenizer.ids("the man " * 60)
    assert truncated and not tokenizer.ids("the man")[1]
    assert len(ids) == 77 and ids[0] == tokenizer.sot_id and ids[-1] == tokenizer.eot_id


def test_batch_padded_to_longest_not_77(tokenizer):
    out = tokenizer(["a man", "a woman in a red coat"])
    assert out.dtype == np.int32 and out.shape == (2, 8)
    assert out[0].tolist() == open_clip.tokenize(["a man"])[0, :8].tolist()
    assert tokenizer([""]).tolist() == [[tokenizer.sot_id, tokenizer.eot_id]]


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=120))
def test_random_strings_match_open_clip(tokenizer, text):
    assert tokenizer([text], pad_to=77)[0].tolist() == open_clip.tokenize([text])[0].tolist()


def test_not_a_tokenizer_file(tmp_path):
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(TokenizerError, match="cannot load tokenizer"):
        ClipTokenizer(tmp_path / "t.json")
