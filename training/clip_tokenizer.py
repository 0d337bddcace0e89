"""CLIP's byte-level BPE (OpenAI's 49 408-token vocabulary, which open_clip ships) as a tokenizer.json.

The runtime and the JavaScript client read every student's tokenizer through the `tokenizers` format, so
CLIP's own tokenizer is rebuilt in it here from the vocabulary file, ids unchanged: text cleaning (NFC, the
quote, ligature, width and entity fixes of ftfy and html.unescape that real labels meet, whitespace collapsed,
lower case), CLIP's split pattern, byte-level symbols, merges with the `</w>` end-of-word suffix. Start and end
are CLIP's own ids renamed to ours; padding is id 0, as open_clip pads. ftfy's repair of mis-decoded text
(mojibake) has no `tokenizers` equivalent: such text tokenizes as written.
"""

from __future__ import annotations

import gzip
import string
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from clipping_edge.errors import ClippingEdgeError
from clipping_edge.tokenizer import EOT, SOT, TextTokenizer

from .compat import import_open_clip

CLIP_VOCAB_SIZE = 49408
# open_clip's split, applied after lower-casing (its IGNORECASE only matters for the contractions then).
CLIP_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
PAD_ID = 0  # open_clip fills rows with 0 ("!"): bidirectional text towers (MobileCLIP) see the padding


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins of the bytes, in CLIP's order (GPT-2's table)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    codes = {**{b: b for b in printable}, **{b: 256 + n for n, b in enumerate(extra)}}
    return [chr(codes[b]) for b in [*printable, *extra]]


def ftfy_replacements() -> list[tuple[str, str]]:
    quotes = [(q, "'") for q in "‘’‚‛′"] + [(q, '"') for q in "“”„‟″"]
    ligatures = [(chr(c), text) for c, text in {
        0x132: "IJ", 0x133: "ij", 0x149: "ʼn", 0x1F1: "DZ", 0x1F2: "Dz", 0x1F3: "dz", 0x1C4: "DŽ", 0x1C5: "Dž", 0x1C6: "dž",
        0x1C7: "LJ", 0x1C8: "Lj", 0x1C9: "lj", 0x1CA: "NJ", 0x1CB: "Nj", 0x1CC: "nj", 0xFB00: "ff", 0xFB01: "fi",
        0xFB02: "fl", 0xFB03: "ffi", 0xFB04: "ffl", 0xFB05: "ſt", 0xFB06: "st"}.items()]
    width = [(chr(c), chr(c - 0xFEE0)) for c in range(0xFF01, 0xFF5F)] + [("\u3000", " ")]
    # html.unescape twice: "&amp;amp;" is "&" too
    entities = [("&amp;", "&"), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#39;", "'"),
                ("&apos;", "'"), ("&nbsp;", " ")]
    return entities + quotes + ligatures + width


def cleaning(kind: str) -> list[normalizers.Normalizer]:
    """open_clip's text cleaning (tokenizer.py: basic_clean, then whitespace, lower (CLIP's own) or canonicalize
    (SigLIP's); ftfy's repairs as the replacements above), or transformers' own for SigLIP (`siglip`)."""
    basic = [normalizers.NFC(), *(normalizers.Replace(a, b) for a, b in ftfy_replacements())]
    collapse = [normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
    if kind == "whitespace":
        return [*basic, *collapse]
    if kind == "lower":
        return [*basic, *collapse, normalizers.Lowercase()]
    punctuation = Regex("[" + "".join("\\" + c for c in string.punctuation) + "]")
    if kind == "canonicalize":
        return [*basic, normalizers.Replace("_", " "), normalizers.Replace(punctuation, ""), normalizers.Lowercase(), *collapse]
    if kind == "siglip":  # transformers' SiglipTokenizer: no ftfy, and "_" is removed like any punctuation
        return [normalizers.Lowercase(), normalizers.Replace(punctuation, ""), *collapse]
    raise ClippingEdgeError(f"text cleaning {kind!r} is not known: open_clip's are whitespace, lower and canonicalize; "
                            "transformers' SigLIP's is siglip")


def build_clip_tokenizer(context_length: int) -> Tokenizer:
    vocab_file = Path(import_open_clip().tokenizer.default_bpe())
    merges = [tuple(line.split()) for line in gzip.open(vocab_file).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]]
    symbols = byte_symbols()
    tokens = [*symbols, *(s + "</w>" for s in symbols), *("".join(m) for m in merges), SOT, EOT]
    assert len(tokens) == CLIP_VOCAB_SIZE, len(tokens)
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, end_of_word_suffix="</w>",
                               continuing_subword_prefix="", fuse_unk=False))
    tok.normalizer = normalizers.Sequence(cleaning("lower"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_PATTERN), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(SOT, special=True), AddedToken(EOT, special=True)])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SOT} $A {EOT}", special_tokens=[(SOT, tok.token_to_id(SOT)), (EOT, tok.token_to_id(EOT))])
    tok.enable_truncation(context_length)
    tok.enable_padding(length=context_length, pad_id=PAD_ID, pad_token=tokens[PAD_ID])
    return tok


def clip_tokenizer(context_length: int, path: str | Path) -> TextTokenizer:
    """Write CLIP's tokenizer as `path` (tokenizer.json) and open it as the runtime will."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    build_clip_tokenizer(context_length).save(str(path))
    return TextTokenizer(path, context_length)
