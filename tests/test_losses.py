"""Losses against naive per-sample reference implementations."""

import math

import torch
import torch.nn.functional as F

from clipping_edge.training.losses import ClipLoss, ClipObjective, ClipPingObjective, Embeddings, NeighbourHeads, NeighbourNCE, NeighbourTargets


def naive_infonce(queries: torch.Tensor, keys: torch.Tensor, scale: float) -> float:
    """-mean_i log( exp(s q_i.k_i) / sum_j exp(s q_i.k_j) ), one row at a time."""
    total = 0.0
    for i in range(len(queries)):
        logits = [scale * float(queries[i] @ keys[j]) for j in range(len(keys))]
        total += -(logits[i] - math.log(sum(math.exp(v) for v in logits)))
    return total / len(queries)


def unit(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_clip_loss_matches_naive_symmetric_infonce():
    zi, zt = unit(6, 8, 0), unit(6, 8, 1)
    logit_scale = torch.tensor(math.log(1 / 0.07))
    expected = (naive_infonce(zi, zt, 1 / 0.07) + naive_infonce(zt, zi, 1 / 0.07)) / 2
    assert abs(ClipLoss()(zi, zt, logit_scale).item() - expected) < 1e-4


def test_clip_loss_clamps_logit_scale_at_100():
    zi, zt = unit(5, 8, 2), unit(5, 8, 3)
    clamped = ClipLoss()(zi, zt, torch.tensor(math.log(1000.0))).item()
    assert abs(clamped - (naive_infonce(zi, zt, 100) + naive_infonce(zt, zi, 100)) / 2) < 1e-3


def test_neighbour_nce_matches_naive_with_fixed_temperature():
    pred, target = torch.randn(5, 12, generator=torch.Generator().manual_seed(4)), unit(5, 12, 5)
    ids = torch.arange(5)
    expected = naive_infonce(F.normalize(pred, dim=-1), target, 1 / 0.1)
    assert abs(NeighbourNCE(0.1)(pred, target, ids).item() - expected) < 1e-4


def test_neighbour_nce_does_not_use_a_shared_target_as_a_negative():
    target = unit(4, 6, 6)
    target[2] = target[0]  # rows 0 and 2 have the same neighbour
    ids = torch.tensor([7, 8, 7, 9])
    pred = target.clone()
    loss = NeighbourNCE(0.1)(pred, target, ids).item()
    # Reference: drop column 2 for row 0 and column 0 for row 2.
    logits = pred @ target.T / 0.1
    logits[0, 2] = logits[2, 0] = float("-inf")
    expected = F.cross_entropy(logits, torch.arange(4)).item()
    assert abs(loss - expected) < 1e-5
    unmasked = F.cross_entropy(pred @ target.T / 0.1, torch.arange(4)).item()
    assert unmasked - loss > 0.1  # the mask matters


def test_clip_ping_is_clip_plus_weighted_neighbour_terms():
    torch.manual_seed(0)
    d, di, dt, b = 8, 10, 6, 5
    heads = NeighbourHeads(d, di, dt)
    objective = ClipPingObjective(lambda_nn=0.5, lambda_xnn=2.0, temperature=0.2)
    zi, zt = unit(b, d, 7), unit(b, d, 8)
    j, k = torch.arange(b), torch.arange(b) + 10
    targets = NeighbourTargets(unit(b, di, 9), j, unit(b, dt, 10), j, unit(b, dt, 11), k, unit(b, di, 12), k)
    scale = torch.tensor(2.0)
    emb = Embeddings(zi[None], zt[None], scale, {n: v[None] for n, v in heads(zi, zt).items()})
    out = objective(emb, targets)
    nce = NeighbourNCE(0.2)
    nn_term = nce(heads.image_to_image(zi), targets.image_nn, j) + nce(heads.text_to_text(zt), targets.text_nn, k)
    xnn_term = nce(heads.image_to_text(zi), targets.image_xnn, j) + nce(heads.text_to_image(zt), targets.text_xnn, k)
    expected = ClipLoss()(zi, zt, scale) + 0.5 * nn_term + 2.0 * xnn_term
    assert torch.allclose(out["loss"], expected, atol=1e-6)
    assert out["nn"].item() > 0 and out["xnn"].item() > 0


def test_views_average_clip_over_every_pair_and_smooth_only_augmented_terms():
    b, d = 6, 8
    images, texts = torch.stack([unit(b, d, 20), unit(b, d, 21)]), torch.stack([unit(b, d, 22), unit(b, d, 23)])
    scale = torch.tensor(1.5)
    got = ClipObjective(label_smoothing=0.2)(Embeddings(images, texts, scale))["loss"]
    clip = ClipLoss()
    expected = (clip(images[0], texts[0], scale) + clip(images[0], texts[1], scale, 0.2)
                + clip(images[1], texts[0], scale, 0.2) + clip(images[1], texts[1], scale, 0.2)) / 4
    assert torch.allclose(got, expected, atol=1e-6)
    # smoothing is applied: without it the augmented terms differ
    assert not torch.allclose(ClipObjective(0.0)(Embeddings(images, texts, scale))["loss"], expected, atol=1e-4)
    # one view each is plain CLIP
    single = ClipObjective(0.2)(Embeddings(images[:1], texts[:1], scale))["loss"]
    assert torch.allclose(single, clip(images[0], texts[0], scale), atol=1e-6)
