"""Training: checkpoints, feature-bank caching with the real packaged teachers, CLIP-PING steps, resume."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clipping_edge import ClippingEdgeError
from clipping_edge.atomic import atomic_directory
from clipping_edge.training.banks import build_banks
from clipping_edge.training.checkpoint import load_student, save_checkpoint
from clipping_edge.training.config import TrainConfig
from clipping_edge.training.data.pairs import read_pairs
from clipping_edge.training.teachers import load_image_teacher, load_text_teacher
from clipping_edge.training.trainer import train


def test_checkpoint_round_trip(tiny_checkpoint: Path, tmp_path: Path):
    model, tokenizer, meta = load_student(tiny_checkpoint)
    copy = save_checkpoint(tmp_path / "copy", model, tiny_checkpoint / "tokenizer.json", {"note": "copy"})
    again, tokenizer2, meta2 = load_student(copy)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    ids = torch.from_numpy(tokenizer(["a red circle", "a blue square on the left"]))
    assert np.array_equal(ids.numpy(), tokenizer2(["a red circle", "a blue square on the left"]))
    with torch.no_grad():
        assert torch.equal(model.text(ids), again.text(ids))
    assert meta2["note"] == "copy" and meta["epoch"] == 20


def test_failed_write_leaves_nothing_behind(tmp_path: Path):
    target = tmp_path / "ckpt"
    with pytest.raises(RuntimeError):
        with atomic_directory(target, "checkpoint") as tmp:
            (tmp / "model.safetensors").write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def teachers():
    return load_image_teacher("efficientnet-lite0", 64), load_text_teacher("minilm")


def test_banks_are_real_teacher_features_cached_and_reused(small_data: Path, teachers, tmp_path: Path, capsys):
    image_teacher, text_teacher = teachers
    pairs = read_pairs(small_data / "train", limit=40)
    banks = build_banks(pairs, image_teacher, text_teacher, root=tmp_path, batch_size=16, workers=0)
    assert banks.image.shape == (40, 1280) and banks.text.shape == (40, 384)
    assert banks.image.dtype == np.float16 and isinstance(banks.image, np.memmap)
    norms = np.linalg.norm(banks.text.astype(np.float32), axis=1)
    assert np.allclose(norms, 1, atol=1e-2)
    # Same caption text -> same features; a caption is closer to itself than to an unrelated one.
    direct = text_teacher.encode(pairs.captions[:2]).numpy()
    assert np.allclose(direct, banks.text[:2].astype(np.float32), atol=2e-3)

    calls = []
    forward = image_teacher.forward
    image_teacher.forward = lambda x: calls.append(len(x)) or forward(x)
    try:
        again = build_banks(pairs, image_teacher, text_teacher, root=tmp_path, batch_size=16, workers=0)
        assert calls == [] and again.path == banks.path and "reusing" in capsys.readouterr().out
        build_banks(pairs, image_teacher, text_teacher, root=tmp_path, batch_size=16, workers=0)
        assert "reusing" not in capsys.readouterr().out  # said once per cache, not once per epoch of a curve
        fewer = build_banks(read_pairs(small_data / "train", limit=20), image_teacher, text_teacher, root=tmp_path,
                            batch_size=16, workers=0)
        assert sum(calls) == 20 and fewer.path != banks.path  # another dataset -> another key
    finally:
        image_teacher.forward = forward
    assert len(list(tmp_path.iterdir())) == 2


def test_clip_ping_trains_and_resumes(small_data: Path, tmp_path: Path):
    cfg = TrainConfig(data=str(small_data), out=str(tmp_path / "run"), student="test-tiny", method="clip-ping", epochs=1,
                      batch_size=32, warmup_steps=2, teacher_image_size=64, workers=0, support_size=100, limit=256)
    ckpt = train(cfg)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and log[0]["nn"] > 0 and log[0]["xnn"] > 0 and np.isfinite(log[0]["loss"])
    first, _, _ = load_student(ckpt)

    with pytest.raises(ClippingEdgeError, match="--resume"):
        train(cfg)  # refuses to overwrite a run silently
    cfg.epochs, cfg.resume = 2, True
    train(cfg)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    second, _, meta = load_student(ckpt)
    assert meta["epoch"] == 2
    assert not torch.equal(first.visual.proj.weight, second.visual.proj.weight)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"zero_shot_top1", "image_to_text_R@1", "zero_shot_top1_held_out"} <= set(metrics)


def test_killed_run_resumes_exactly_like_an_uninterrupted_one(small_data: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch):
    import clipping_edge.training.trainer as trainer

    def run(out: str, resume: bool = False) -> Path:
        return train(TrainConfig(data=str(small_data), out=out, student="test-tiny", method="clip", epochs=2,
                                 batch_size=32, warmup_steps=2, workers=1, resume=resume, limit=512))

    straight, _, _ = load_student(run(str(tmp_path / "a")))

    real_save = trainer.save_checkpoint

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt  # killed right after the first epoch's checkpoint

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(str(tmp_path / "b"))
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    resumed, _, meta = load_student(run(str(tmp_path / "b"), resume=True))
    assert meta["epoch"] == 2
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-5), name
