"""Methods and recipes: A-CLIP-PING, the improved recipe, the neighbour switches, and exact gradient
accumulation, each trained for real on a few steps of the tiny student."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from clipping_edge import ClippingEdgeError
from clipping_edge.training.config import TrainConfig
from clipping_edge.training.data.augment import StrongImageAugment, TextAugment, make_recipe
from clipping_edge.training.trainer import Trainer, train


def quick(small_data: Path, out: Path, **overrides) -> TrainConfig:
    base = dict(data=str(small_data), out=str(out), student="test-tiny", method="clip-ping", epochs=1, batch_size=32,
                warmup_steps=2, teacher_image_size=64, workers=0, support_size=100, limit=128)
    return TrainConfig(**{**base, **overrides})


def log_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("overrides", [
    dict(method="a-clip-ping"),
    dict(method="clip-ping", recipe="improved"),
    dict(method="clip", recipe="improved", image_views=3, text_views=1),
    dict(method="clip-ping", neighbours=3, neighbour_query="student", xnn="swap", support_refresh=2),
], ids=["a-clip-ping", "clip-ping-improved", "clip-improved-3views", "k3-student-swap-refresh"])
def test_method_trains_with_finite_decreasing_loss(overrides: dict, small_data: Path, tmp_path: Path):
    cfg = quick(small_data, tmp_path / "run", epochs=2, **overrides)
    train(cfg)
    log = log_of(tmp_path / "run")
    assert len(log) == 2 and all(np.isfinite(r["loss"]) for r in log)
    assert log[1]["loss"] < log[0]["loss"]
    if cfg.method != "clip":
        assert log[0]["nn"] > 0 and log[0]["xnn"] > 0 and log[0]["mining_seconds"] >= 0


def test_a_clip_ping_searches_with_the_teachers_on_the_augmented_view(small_data: Path, tmp_path: Path):
    trainer = Trainer(quick(small_data, tmp_path / "run", method="a-clip-ping", support_size=64))
    calls = []
    image_teacher, text_teacher = trainer.guide.teachers
    encode = image_teacher.encode
    image_teacher.encode = lambda px: calls.append(px.clone()) or encode(px)
    pixels, captions, idx = next(iter(torch.utils.data.DataLoader(
        trainer.dataset, batch_sampler=trainer.sampler, collate_fn=__import__("clipping_edge.training.data.augment", fromlist=["x"]).collate_views)))
    trainer.guide.refresh(0, 0)
    trainer.step(pixels, captions, idx)
    assert len(calls) == 1 and torch.equal(calls[0], pixels[:32])  # the very pixels the student trained on
    support = set(trainer.guide.support.ids.tolist())
    assert len(support) == 64


def test_bad_switches_get_one_clear_error(small_data: Path, tmp_path: Path):
    with pytest.raises(ClippingEdgeError, match="unknown --method 'a-clipping'"):
        Trainer(quick(small_data, tmp_path / "a", method="a-clipping"))
    with pytest.raises(ClippingEdgeError, match="accum-steps"):
        Trainer(quick(small_data, tmp_path / "b", accum_steps=5))


@pytest.mark.parametrize("method", ["clip", "clip-ping"])
def test_gradient_accumulation_gives_the_full_batch_update(method: str, small_data: Path, tmp_path: Path,
                                                            batchnorm_free_student: str):
    weights = []
    for accum in (1, 4):
        trainer = Trainer(quick(small_data, tmp_path / f"acc{accum}", student=batchnorm_free_student, method=method,
                                accum_steps=accum, lr=1e-2))
        loader = torch.utils.data.DataLoader(trainer.dataset, batch_sampler=trainer.sampler,
                                             collate_fn=__import__("clipping_edge.training.data.augment", fromlist=["x"]).collate_views)
        if trainer.guide:
            trainer.guide.refresh(0, 0)
        losses = trainer.step(*next(iter(loader)))
        # Compare gradients, not Adam's first step: it divides by |g|, which magnifies rounding in tiny grads.
        weights.append(({k: p.grad.clone() for k, p in trainer.model.named_parameters()}, losses["loss"]))
    (full, loss_full), (accumulated, loss_acc) = weights
    assert abs(loss_full - loss_acc) < 1e-5
    for name in full:
        scale = full[name].abs().max().item()
        torch.testing.assert_close(accumulated[name], full[name], atol=1e-5 * max(scale, 1e-3), rtol=1e-4, msg=name)


def test_text_augmentation_is_deterministic_and_never_empty():
    augment = TextAugment()
    caption = "a photo of a large striped red circle on the left."
    outs = {augment(caption, random.Random(s)) for s in range(30)}
    assert augment(caption, random.Random(3)) == augment(caption, random.Random(3))
    assert len(outs) > 10 and all(o.strip() for o in outs)
    assert any("photo" in o and " of " not in f" {o} " for o in outs)  # stop words removed sometimes
    assert augment("circle", random.Random(0)) == "circle"


def test_strong_augmentation_keeps_hue_unless_asked():
    from PIL import Image

    red = Image.new("RGB", (48, 48), (215, 38, 38))
    for seed in range(20):
        out = StrongImageAugment(32)(red, random.Random(seed)).numpy()
        assert out.shape == (3, 32, 32)
        r, g, b = out.reshape(3, -1).mean(1)
        assert r >= g - 1e-3 and r >= b - 1e-3  # grey or red, never another hue
    shifted = [StrongImageAugment(32, hue=0.5)(red, random.Random(s)).numpy().reshape(3, -1).mean(1) for s in range(20)]
    assert any(g > r + 0.05 or b > r + 0.05 for r, g, b in shifted)
    recipe = make_recipe("improved", 32, image_views=3, text_views=2)
    assert len(recipe.image_views) == 3 and recipe.text_views[0] is None and recipe.label_smoothing == 0.1
