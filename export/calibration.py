"""Calibration batches for quantization, drawn from the training split (never the validation split)."""

from __future__ import annotations

import numpy as np

from clipping_edge.preprocess import preprocess_batch
from clipping_edge.tokenizer import TextTokenizer
from training.data.pairs import PairSet


def calibration_batches(kind: str, pairs: PairSet, tokenizer: TextTokenizer, image_size: int, samples: int = 128,
                        batch_size: int = 16) -> list[np.ndarray]:
    """`samples` pairs spread evenly over the split, as model inputs, in batches."""
    picks = np.linspace(0, len(pairs) - 1, num=min(samples, len(pairs))).round().astype(int)
    chosen = [pairs.pairs[i] for i in picks]
    if kind == "image":
        inputs = preprocess_batch([p.source() for p in chosen], image_size)
    else:
        inputs = tokenizer([p.caption for p in chosen], warn=False)
    return [inputs[i:i + batch_size] for i in range(0, len(inputs), batch_size)]
