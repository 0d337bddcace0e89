"""How often a teacher's nearest neighbour shares the pair's label: the quality of the guidance
CLIP-PING adds, per modality, against chance.

    python -m clipping_edge.benchmarks.neighbour_quality --data synthetic --teacher-image-size 128

For the synthetic set ("<colour> <shape>" labels of the first object) colour and shape agreement are
reported too. Uses (and caches) the same feature banks as training.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from clipping_edge.training.banks import build_banks
from clipping_edge.training.data.pairs import read_pairs, resolve_split
from clipping_edge.training.neighbours import nearest_in_support
from clipping_edge.training.teachers import load_image_teacher, load_text_teacher


def agreement(labels: np.ndarray, neighbours: np.ndarray) -> dict[str, float]:
    out = {"label": float(np.mean(labels[neighbours] == labels))}
    parts = np.array([label.split() for label in labels], dtype=object)
    if all(len(p) == 2 for p in parts):  # "<colour> <shape>"
        for i, name in enumerate(("colour", "shape")):
            words = np.array([p[i] for p in parts])
            out[name] = float(np.mean(words[neighbours] == words))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--image-teacher", default="efficientnet-lite0")
    parser.add_argument("--text-teacher", default="minilm")
    parser.add_argument("--teacher-image-size", type=int, default=128)
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()

    pairs = read_pairs(resolve_split(args.data, "train"), limit=args.limit)
    if not all(p.label for p in pairs.pairs):
        raise SystemExit(f"{pairs.root} has no label column: neighbour agreement needs labels")
    labels = np.array([p.label for p in pairs.pairs])
    banks = build_banks(pairs, load_image_teacher(args.image_teacher, args.teacher_image_size),
                        load_text_teacher(args.text_teacher))
    everything = torch.arange(len(pairs))
    result = {"pairs": len(pairs), "bank": str(banks.path),
              "chance": agreement(labels, np.random.default_rng(0).permutation(len(pairs))),
              "image_teacher": agreement(labels, nearest_in_support(banks.image, everything)[:, 0].numpy()),
              "text_teacher": agreement(labels, nearest_in_support(banks.text, everything)[:, 0].numpy())}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
