"""Train the student's byte-level BPE tokenizer on the training captions with the `tokenizers` library.

Byte-level BPE encodes any string (no unknown token), so labels never seen in training still work.
The saved tokenizer.json carries lowercasing, start/end tokens, padding and truncation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from clipping_edge.tokenizer import EOT, PAD, SOT, TextTokenizer


def train_tokenizer(texts: Iterable[str], vocab_size: int, context_length: int, path: str | Path) -> TextTokenizer:
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, SOT, EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return save_student_tokenizer(tok, context_length, path)


def save_student_tokenizer(tok: Tokenizer, context_length: int, path: str | Path) -> TextTokenizer:
    """Add what every student tokenizer carries (start/end tokens, padding and truncation to the context
    length), save it as tokenizer.json and open it as the runtime will."""
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SOT} $A {EOT}", special_tokens=[(SOT, tok.token_to_id(SOT)), (EOT, tok.token_to_id(EOT))])
    tok.enable_truncation(context_length)
    tok.enable_padding(length=context_length, pad_id=tok.token_to_id(PAD), pad_token=PAD)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return TextTokenizer(path, context_length)
