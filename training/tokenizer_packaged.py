"""Open-vocabulary tokenizers that ship inside packages, rewritten into the student's tokenizer format.

The default student tokenizer is the WordPiece vocabulary (30 522 tokens, uncased) of the packaged
MiniLM text teacher: any English label is spelled with pieces a general corpus trained, and a text
tower initialised from MiniLM reads the same ids. Its special tokens are renamed to ours (ids kept),
and start/end tokens, padding and truncation are set as for the caption-trained BPE, so the runtime
reads it like any other tokenizer.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer

from clipping_edge.errors import ClippingEdgeError
from clipping_edge.tokenizer import EOT, PAD, SOT, TextTokenizer

from .tokenizer_build import save_student_tokenizer

BERT_SPECIALS = {"[PAD]": PAD, "[CLS]": SOT, "[SEP]": EOT}
# --tokenizer choices besides "captions" (a BPE trained on the run's captions): name -> where it comes from
PACKAGED_TOKENIZERS = ("minilm",)


def packaged_tokenizer(name: str, context_length: int, path: str | Path) -> TextTokenizer:
    if name not in PACKAGED_TOKENIZERS:
        raise ClippingEdgeError(f"unknown --tokenizer {name!r}: choose captions or one of {', '.join(PACKAGED_TOKENIZERS)}")
    from .teachers import minilm_folder

    data = json.loads((Path(minilm_folder()) / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    for old, new in BERT_SPECIALS.items():
        vocab[new] = vocab.pop(old)
    for token in data.get("added_tokens", []):
        token["content"] = BERT_SPECIALS.get(token["content"], token["content"])
    data["post_processor"] = data["padding"] = data["truncation"] = None
    return save_student_tokenizer(Tokenizer.from_str(json.dumps(data)), context_length, path)
