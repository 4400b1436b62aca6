"""Builds `tokenizer.json` (Hugging Face `tokenizers` format) from open_clip's CLIP BPE vocabulary."""

from __future__ import annotations

from pathlib import Path

from sen_infer.engine.tokenizer import EOT, SOT, SPLIT_PATTERN


def build_tokenizer_json(path: str | Path) -> Path:
    """Write the CLIP BPE tokenizer used by open_clip.tokenize to `path`."""
    from open_clip.tokenizer import SimpleTokenizer
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    ref = SimpleTokenizer()
    merges = [pair for pair, _ in sorted(ref.bpe_ranks.items(), key=lambda kv: kv[1])]
    vocab = {tok: idx for tok, idx in ref.encoder.items() if tok not in (SOT, EOT)}
    bpe = models.BPE(vocab=vocab, merges=merges, end_of_word_suffix="</w>", fuse_unk=False)
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([SOT, EOT])
    if tok.token_to_id(SOT) != ref.sot_token_id or tok.token_to_id(EOT) != ref.eot_token_id:
        raise RuntimeError("special token ids differ from open_clip's")
    path = Path(path)
    tok.save(str(path))
    return path
