"""A pretrained model's own tokenizer (SigLIP's SentencePiece, or any Hugging Face tokenizer.json) as our tokenizer.json.

The runtime and the JavaScript client read every tokenizer through the `tokenizers` format. A SentencePiece
Unigram model (`spiece.model`) is rewritten in it with its vocabulary, scores and normalisation (the precompiled
NFKC map) unchanged, as transformers' own converter does; a `tokenizer.json` is taken as it is. In front of either
goes the text cleaning open_clip applies before the model's tokenizer (SigLIP: `canonicalize`, punctuation removed
and lower-cased), and behind it the end token, truncation and padding to the model's context length, so that
the ids equal what open_clip feeds the model. The model file is parsed here (the protobuf wire format is a few
lines), so importing needs neither the sentencepiece nor the protobuf package.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from clipping_edge.errors import ClippingEdgeError

from .clip_tokenizer import cleaning

# Where a model folder keeps its tokenizer, in the order they are looked for.
TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "tokenizer.model", "sentencepiece.bpe.model")
UNKNOWN, CONTROL, BYTE = 2, 3, 6  # SentencePiece piece types
SPACE = "▁"


@dataclass
class SentencePieceModel:
    pieces: list[tuple[str, float, int]] = field(default_factory=list)  # (piece, score, type)
    charsmap: bytes = b""  # the normaliser's precompiled map (empty: identity)
    add_dummy_prefix: bool = True
    model_type: int = 1  # 1 unigram, 2 bpe


def _fields(data: bytes):
    """(field number, value) of one protobuf message: ints for varints, bytes for length-delimited, floats for 32-bit."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = struct.unpack_from("<f", data, pos)[0], pos + 4
        elif wire == 1:
            value, pos = struct.unpack_from("<d", data, pos)[0], pos + 8
        else:
            raise ValueError(f"wire type {wire}")
        yield number, value


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def read_sentencepiece(path: Path) -> SentencePieceModel:
    """ModelProto: 1 pieces (1 piece, 2 score, 3 type), 2 trainer_spec (3 model_type), 3 normalizer_spec
    (2 precompiled_charsmap, 3 add_dummy_prefix)."""
    model = SentencePieceModel()
    try:
        for number, value in _fields(path.read_bytes()):
            if number == 1:
                piece = dict(_fields(value))
                model.pieces.append((piece.get(1, b"").decode("utf-8"), float(piece.get(2, 0.0)), int(piece.get(3, 1))))
            elif number == 2:
                model.model_type = int(dict(_fields(value)).get(3, 1))
            elif number == 3:
                spec = dict(_fields(value))
                model.charsmap, model.add_dummy_prefix = spec.get(2, b""), bool(spec.get(3, 1))
    except (ValueError, IndexError, struct.error, UnicodeDecodeError) as exc:
        raise ClippingEdgeError(f"{path} is not a SentencePiece model ({exc}): pass the spiece.model the model came with") from None
    if not model.pieces:
        raise ClippingEdgeError(f"{path} holds no SentencePiece vocabulary: pass the spiece.model the model came with")
    if model.model_type != 1:
        raise ClippingEdgeError(f"{path} is a SentencePiece BPE model: only Unigram models (SigLIP's) are read; pass the "
                                "model's tokenizer.json instead")
    return model


def sentencepiece_tokenizer(path: Path) -> tuple[Tokenizer, str]:
    """A SentencePiece Unigram model as a `tokenizers` Tokenizer, and its end-of-sequence piece."""
    model = read_sentencepiece(path)
    unknown = [i for i, (_, _, kind) in enumerate(model.pieces) if kind == UNKNOWN]
    tok = Tokenizer(models.Unigram([(piece, score) for piece, score, _ in model.pieces], unk_id=unknown[0] if unknown else None,
                                   byte_fallback=any(kind == BYTE for _, _, kind in model.pieces)))
    steps = [normalizers.Precompiled(model.charsmap)] if model.charsmap else []
    tok.normalizer = normalizers.Sequence([*steps, normalizers.Strip(left=False, right=True),
                                           normalizers.Replace(Regex(" {2,}"), SPACE)])
    scheme = "always" if model.add_dummy_prefix else "never"
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme=scheme)
    tok.decoder = decoders.Metaspace(replacement=SPACE, prepend_scheme=scheme)
    controls = [piece for piece, _, kind in model.pieces if kind == CONTROL]
    end = "</s>" if "</s>" in controls else (controls[-1] if controls else "")
    return tok, end


def _special_token(folder: Path, name: str) -> str | None:
    """`pad_token` or `eos_token` as the folder's tokenizer_config.json or special_tokens_map.json names it."""
    for file in ("special_tokens_map.json", "tokenizer_config.json"):
        try:
            value = json.loads((folder / file).read_text(encoding="utf-8")).get(name)
        except (OSError, ValueError, AttributeError):
            continue
        value = value.get("content") if isinstance(value, dict) else value
        if isinstance(value, str):
            return value
    return None


def find_tokenizer(*folders: Path) -> Path | None:
    for folder in folders:
        for name in TOKENIZER_FILES:
            if (folder / name).is_file():
                return folder / name
    return None


def model_tokenizer(path: Path, context_length: int, clean: str = "whitespace") -> Tokenizer:
    """The model's tokenizer file as our tokenizer.json: cleaning, the file's own tokenizer, its end token,
    truncation and padding to `context_length` (with the model's pad token; SigLIP pads with its end token)."""
    if path.suffix == ".json":
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:
            raise ClippingEdgeError(f"{path} is not a tokenizers JSON file ({str(exc)[:200]}): pass the model's tokenizer.json") from None
        end = _special_token(path.parent, "eos_token") or ""
    else:
        tok, end = sentencepiece_tokenizer(path)
        end = _special_token(path.parent, "eos_token") or end
    if tok.post_processor is None and end:
        end_id = tok.token_to_id(end)
        if end_id is None:
            raise ClippingEdgeError(f"{path} has no end token {end!r}: pass the tokenizer the model came with")
        tok.post_processor = processors.TemplateProcessing(single=f"$A {end}", special_tokens=[(end, end_id)])
    own = [tok.normalizer] if tok.normalizer is not None else []
    tok.normalizer = normalizers.Sequence([*cleaning(clean), *own])
    own_padding = (tok.padding or {}).get("pad_token")
    pad = _special_token(path.parent, "pad_token") or own_padding or end
    pad_id = tok.token_to_id(pad) if pad else None
    if pad_id is None:
        raise ClippingEdgeError(f"{path}: no pad token {pad!r} in the vocabulary: put the model's special_tokens_map.json "
                                "or tokenizer_config.json beside it")
    tok.enable_truncation(context_length)
    tok.enable_padding(length=context_length, pad_id=pad_id, pad_token=pad)
    return tok
