"""Text -> fixed-length int32 token ids, with the `tokenizers` library and the bundle's tokenizer.json.

The tokenizer.json written at training time (or import) carries its own normaliser, start/end tokens, padding
to the context length and truncation, so encoding here is identical to encoding in training. Our own files name
their end token <eot>; an imported model's (SigLIP's </s>) is the last special token of its template.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from tokenizers import Tokenizer

from .errors import ClippingEdgeError

PAD, SOT, EOT = "<pad>", "<sot>", "<eot>"


class TextTokenizer:
    def __init__(self, path: str | Path, context_length: int):
        path = Path(path)
        if not path.is_file():
            raise ClippingEdgeError(f"tokenizer file {path} does not exist: copy tokenizer.json next to the model")
        try:
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:
            raise ClippingEdgeError(f"{path} is not a tokenizers JSON file ({exc}): re-export the bundle") from None
        self.context_length = context_length
        # The file's own padding where it sets one (CLIP pads with id 0, a real token), else our <pad>.
        padding = self.tokenizer.padding
        self.pad_id = padding["pad_id"] if padding else self._id(PAD, path)
        self.eot_id = self._end_id(path)
        self.tokenizer.enable_truncation(context_length)
        self.tokenizer.enable_padding(length=context_length, pad_id=self.pad_id, pad_token=PAD)

    def _id(self, token: str, path: Path) -> int:
        token_id = self.tokenizer.token_to_id(token)
        if token_id is None:
            raise ClippingEdgeError(f"{path} has no {token} token: it was not written by clipping-edge")
        return token_id

    def _end_id(self, path: Path) -> int:
        if self.tokenizer.token_to_id(EOT) is not None:
            return self._id(EOT, path)
        template = json.loads(self.tokenizer.to_str()).get("post_processor") or {}
        last = (template.get("single") or [{}])[-1] if template.get("type") == "TemplateProcessing" else {}
        if "SpecialToken" not in last:
            raise ClippingEdgeError(f"{path} has no end token (neither {EOT} nor a template ending in one): it was not "
                                    "written by clipping-edge")
        return template["special_tokens"][last["SpecialToken"]["id"]]["ids"][0]

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def __call__(self, texts: Sequence[str] | str, warn: bool = True) -> np.ndarray:
        """Encode to (B, context_length) int32. Over-long texts are truncated (end token kept), with a
        warning unless `warn=False` (training, where web captions are routinely cut)."""
        if isinstance(texts, str):
            texts = [texts]
        # A literal special token inside user text would add a second end token and corrupt pooling.
        # Texts are cut before tokenizing: a token spans at most a few dozen characters, and a
        # megabyte label would otherwise cost minutes and gigabytes to truncate afterwards.
        limit = 64 * self.context_length
        clean = [t[:limit].replace(EOT, " ").replace(SOT, " ").replace(PAD, " ") for t in texts]
        encodings = self.tokenizer.encode_batch(clean)
        long = [t for t, e in zip(texts, encodings) if e.overflowing] if warn else []
        if long:
            warnings.warn(f"{len(long)} text(s) longer than the context of {self.context_length} tokens were truncated, "
                          f"e.g. {long[0][:60]!r}", stacklevel=2)
        return np.asarray([e.ids for e in encodings], dtype=np.int32).reshape(len(clean), self.context_length)
