"""Calibration batches for quantization, drawn from the training split (never the validation split)."""

from __future__ import annotations

import numpy as np

from clipping_edge.preprocess import Preprocess, preprocess_batch
from clipping_edge.tokenizer import TextTokenizer
from clipping_edge.training.data.pairs import PairSet


def calibration_batches(kind: str, pairs: PairSet, tokenizer: TextTokenizer, image_size: int | Preprocess, samples: int = 128,
                        batch_size: int = 16, between: bool = False) -> list[np.ndarray]:
    """`samples` pairs spread evenly over the split, as model inputs, in batches. `between`: the pairs halfway
    between consecutive picks instead (one fewer), rows a calibrated quantizer never saw, to score it on; on a
    split under twice `samples` pairs some of them are calibration rows too."""
    spread = np.linspace(0, len(pairs) - 1, num=min(samples, len(pairs)))
    picks = ((spread[:-1] + spread[1:]) / 2 if between else spread).round().astype(int)
    chosen = [pairs.pairs[i] for i in picks]
    if kind == "image":
        inputs = preprocess_batch([p.source() for p in chosen], image_size)
    else:
        inputs = tokenizer([p.caption for p in chosen], warn=False)
    return [inputs[i:i + batch_size] for i in range(0, len(inputs), batch_size)]
