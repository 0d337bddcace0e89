"""Neighbour mining on toy banks: the right NN and XNN, never the pair itself, only from the support set."""

import numpy as np
import torch

from training.banks import FeatureBanks
from training.neighbours import mine_neighbours, nearest_in_support
from training.trainer import neighbour_targets


def toy_bank() -> np.ndarray:
    # rows 0/1 are near-duplicates, 2/3 near each other, 4 alone but closest to 3
    return np.array([[1, 0.05, 0], [0.99, 0.1, 0], [0, 1, 0], [0, 0.9, 0.3], [0, 0.5, 0.9]], dtype=np.float16)


def naive_nn(bank: np.ndarray, support: list[int]) -> list[int]:
    out = []
    for i, q in enumerate(bank.astype(np.float32)):
        cands = [(float(q @ bank[j].astype(np.float32)), j) for j in support if j != i]
        out.append(max(cands)[1])
    return out


def test_nearest_excludes_self_and_matches_naive():
    bank = toy_bank()
    support = torch.arange(5)
    got = nearest_in_support(bank, support).tolist()
    assert got == naive_nn(bank, list(range(5))) == [1, 0, 3, 2, 3]


def test_nearest_only_looks_in_the_support_set():
    bank = toy_bank()
    support = torch.tensor([0, 2, 4])
    got = nearest_in_support(bank, support, chunk=2).tolist()
    assert got == naive_nn(bank, [0, 2, 4])
    assert set(got) <= {0, 2, 4}
    assert got[0] != 0 and got[2] != 2 and got[4] != 4


def test_random_banks_match_naive_and_xnn_follows_the_pairing():
    rng = np.random.default_rng(0)
    image = rng.standard_normal((40, 7)).astype(np.float16)
    text = rng.standard_normal((40, 5)).astype(np.float16)
    nbr = mine_neighbours(image, text, support_size=25, generator=torch.Generator().manual_seed(3))
    assert (nbr.image_nn != torch.arange(40)).all() and (nbr.text_nn != torch.arange(40)).all()
    support = sorted(set(nbr.image_nn.tolist()) | set(nbr.text_nn.tolist()))
    assert len(support) <= 25
    banks = FeatureBanks(image, text, path=None, stats={})
    idx = torch.tensor([3, 17, 30])
    t = neighbour_targets(banks, nbr.image_nn, nbr.text_nn, idx, torch.device("cpu"))
    for row, i in enumerate(idx.tolist()):
        j, k = nbr.image_nn[i].item(), nbr.text_nn[i].item()
        assert torch.allclose(t.image_of_image_nn[row], torch.from_numpy(image[j].astype(np.float32)))
        assert torch.allclose(t.text_of_image_nn[row], torch.from_numpy(text[j].astype(np.float32)))  # image XNN: caption j
        assert torch.allclose(t.text_of_text_nn[row], torch.from_numpy(text[k].astype(np.float32)))
        assert torch.allclose(t.image_of_text_nn[row], torch.from_numpy(image[k].astype(np.float32)))  # caption XNN: image k
