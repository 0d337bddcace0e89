"""Neighbour mining on toy banks: the right NN and XNN, never the pair itself, only from the support set."""

import numpy as np
import torch

from clipping_edge.training.neighbours import mine_neighbours, nearest_in_support, nearest_with_usearch, targets_for


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
    got = nearest_in_support(bank, support)[:, 0].tolist()
    assert got == naive_nn(bank, list(range(5))) == [1, 0, 3, 2, 3]


def test_nearest_only_looks_in_the_support_set():
    bank = toy_bank()
    support = torch.tensor([0, 2, 4])
    got = nearest_in_support(bank, support, chunk=2)[:, 0].tolist()
    assert got == naive_nn(bank, [0, 2, 4])
    assert set(got) <= {0, 2, 4}
    assert got[0] != 0 and got[2] != 2 and got[4] != 4


def test_random_banks_match_naive_and_xnn_follows_the_pairing():
    rng = np.random.default_rng(0)
    image = rng.standard_normal((40, 7)).astype(np.float16)
    text = rng.standard_normal((40, 5)).astype(np.float16)
    nbr = mine_neighbours(image, text, support_size=25, generator=torch.Generator().manual_seed(3))
    image_nn, text_nn = nbr.image_nn[:, 0], nbr.text_nn[:, 0]
    assert (image_nn != torch.arange(40)).all() and (text_nn != torch.arange(40)).all()
    support = sorted(set(image_nn.tolist()) | set(text_nn.tolist()))
    assert len(support) <= 25 and nbr.method == "exact"
    idx = torch.tensor([3, 17, 30])
    for xnn in ("pairing", "swap"):
        t = targets_for(image, text, image_nn[idx], text_nn[idx], torch.device("cpu"), xnn)
        for row, i in enumerate(idx.tolist()):
            j, k = image_nn[i].item(), text_nn[i].item()
            image_cross, text_cross = (j, k) if xnn == "pairing" else (k, j)
            assert torch.allclose(t.image_nn[row], torch.from_numpy(image[j].astype(np.float32)))
            assert torch.allclose(t.image_xnn[row], torch.from_numpy(text[image_cross].astype(np.float32)))
            assert torch.allclose(t.text_nn[row], torch.from_numpy(text[k].astype(np.float32)))
            assert torch.allclose(t.text_xnn[row], torch.from_numpy(image[text_cross].astype(np.float32)))
            assert t.image_xnn_ids[row] == image_cross and t.text_xnn_ids[row] == text_cross


def test_top_k_neighbours_are_the_k_best_in_order():
    rng = np.random.default_rng(1)
    bank = rng.standard_normal((30, 6)).astype(np.float32)
    got = nearest_in_support(bank, torch.arange(30), k=4, chunk=7)
    for i in range(30):
        sims = bank @ bank[i]
        sims[i] = -np.inf
        assert got[i].tolist() == np.argsort(-sims)[:4].tolist()


def test_usearch_mining_agrees_with_exact_search():
    rng = np.random.default_rng(2)
    bank = rng.standard_normal((500, 16)).astype(np.float32)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    support = torch.arange(0, 500, 2)
    exact = nearest_in_support(bank, support, k=1)[:, 0]
    approximate = nearest_with_usearch(bank, support, k=1)[:, 0]
    assert (approximate != torch.arange(500)).all() and set(approximate.tolist()) <= set(support.tolist())
    assert (approximate == exact).float().mean() > 0.95
