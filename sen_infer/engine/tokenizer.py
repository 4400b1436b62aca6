"""CLIP BPE tokenization without torch: `tokenizer.json` (Hugging Face `tokenizers`) plus open_clip's
text cleaning, giving exactly open_clip's token ids.

open_clip cleans text in Python before BPE (ftfy, HTML entities unescaped twice, whitespace runs
collapsed, lower case) and splits it with the `regex` module. `tokenizer.json` carries the same split
pattern so it stands alone, but Rust's regex engine and Python's `regex` disagree on code points
their Unicode versions classify differently (found by the random-string test), so here the split
runs in Python and `tokenizers` does only the byte-level mapping and BPE. Batches are padded to
their longest query, not to 77, so a short query costs a fraction of a full context.
"""

from __future__ import annotations

import html
import os

import numpy as np

from sen_infer.errors import TokenizerError

SOT, EOT = "<start_of_text>", "<end_of_text>"
# open_clip's pre-tokenisation pattern (without its special-token prefix: those are added tokens here)
SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def split_words(text: str) -> list[str]:
    """open_clip's pre-tokenisation of cleaned text, with open_clip's regex engine."""
    return _split_re().findall(text)


_SPLIT = None


def _split_re():
    global _SPLIT
    if _SPLIT is None:
        import regex

        _SPLIT = regex.compile(f"{SOT}|{EOT}|{SPLIT_PATTERN}", regex.IGNORECASE)
    return _SPLIT


def clean(text: str) -> str:
    """open_clip's `lower` cleaning: ftfy, double HTML unescape, collapsed whitespace, lower case."""
    import ftfy
    import regex

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return regex.sub(r"\s+", " ", text).strip().lower()


class ClipTokenizer:
    """open_clip's CLIP tokenizer without torch: open_clip's cleaning and word split here, the byte-level
    BPE of `tokenizer.json` by `tokenizers`, so the ids are exactly open_clip's.

    Args:
        path: the engine dir's `tokenizer.json`.
        context_length: most tokens per text, start and end tokens included (the manifest's).

    Raises:
        TokenizerError: the file cannot be loaded, or it has no <start_of_text> / <end_of_text> token.
    """

    def __init__(self, path: str | os.PathLike, context_length: int = 77):
        from tokenizers import Tokenizer, pre_tokenizers

        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception for unreadable files
            raise TokenizerError(f"cannot load tokenizer {path}: {e}") from None
        # words come pre-split by split_words(); keep only the byte-level stage of the file's pipeline
        self._tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        self.sot_id, self.eot_id = self._tok.token_to_id(SOT), self._tok.token_to_id(EOT)
        if self.sot_id is None or self.eot_id is None:
            raise TokenizerError(f"{path} is not a CLIP tokenizer (no {SOT} / {EOT} tokens)")
        self.context_length = context_length

    def ids(self, text: str) -> tuple[list[int], bool]:
        """Token ids with start/end tokens, truncated to the context length with end-of-text kept
        last; and whether truncation happened."""
        words = split_words(clean(text)) if text else []
        body = self._tok.encode(words, is_pretokenized=True, add_special_tokens=False).ids if words else []
        ids = [self.sot_id, *body, self.eot_id]
        if len(ids) <= self.context_length:
            return ids, False
        ids = ids[: self.context_length]
        ids[-1] = self.eot_id
        return ids, True

    def encode(self, texts: list[str] | str, pad_to: int | None = None) -> tuple[np.ndarray, list[int]]:
        """(int32 [N, L], indices of truncated texts). L is the batch's longest sequence or `pad_to`.

        Args:
            texts: one text or a list of them.
            pad_to: a fixed width (e.g. the context length) instead of the batch's longest sequence.

        Returns:
            (token ids padded with 0, the indices of texts cut to the context length).
        """
        if isinstance(texts, str):
            texts = [texts]
        seqs, truncated = [], []
        for i, t in enumerate(texts):
            ids, cut = self.ids(t)
            seqs.append(ids)
            if cut:
                truncated.append(i)
        width = pad_to or max((len(s) for s in seqs), default=2)
        out = np.zeros((len(seqs), width), np.int32)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = s[:width]
        return out, truncated

    def __call__(self, texts: list[str] | str, pad_to: int | None = None) -> np.ndarray:
        """int32 [N, L]: L is the longest sequence in the batch, or `pad_to` (e.g. 77); 0 pads."""
        return self.encode(texts, pad_to)[0]
