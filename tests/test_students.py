"""The student registry: every named architecture builds; CNN, re-parameterizable and BERT-style towers
train, fuse and export to ONNX within the fp32 gate."""

from pathlib import Path

import numpy as np
import pytest
import torch

from clipping_edge import ClippingEdgeError
from clipping_edge.training.config import TrainConfig, list_students, student_config
from clipping_edge.training.models import Student


def test_registry_names_the_paper_scale_a_cnn_a_reparameterizable_and_a_bert_student():
    names = set(list_students())
    assert {"vit-xs", "vit-s", "mobilenetv3", "mobileone-s0", "vit-nano-mobilebert", "test-tiny"} <= names
    assert student_config("mobileone-s0").vision.kind == "timm"
    assert student_config("vit-nano-mobilebert").text.kind == "bert"
    with pytest.raises(ClippingEdgeError, match="did you mean 'vit-xs'"):
        student_config("vit-xss")


def test_reparameterized_tower_computes_the_same_function_with_fewer_convs():
    cfg = student_config("test-tiny-reparam")
    cfg.text.eot_id = 2
    visual = Student(cfg).visual.eval()
    fused = visual.fused()
    convs = lambda m: sum(isinstance(x, torch.nn.Conv2d) for x in m.modules())  # noqa: E731
    assert convs(fused) < convs(visual) and fused is not visual
    pixels = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fused(pixels), visual(pixels), atol=1e-5, rtol=0)


@pytest.mark.parametrize("student", ["test-tiny-cnn", "test-tiny-reparam"])
def test_timm_and_bert_students_train_and_export(student: str, small_data: Path, tmp_path: Path):
    from clipping_edge.export.bundle import export_bundle
    from clipping_edge.training.trainer import train

    ckpt = train(TrainConfig(data=str(small_data), out=str(tmp_path / "run"), student=student, method="clip", epochs=1,
                             batch_size=32, warmup_steps=2, workers=0, limit=128))
    _, parity = export_bundle(ckpt, tmp_path / "bundle", "onnx", "none", str(small_data))
    assert parity["passed"] and parity["image_cosine_min"] > 0.9999 and parity["text_cosine_min"] > 0.9999
    if student == "test-tiny-cnn":  # the MobileBERT-style text tower through coremltools too (no new_ones)
        _, parity = export_bundle(ckpt, tmp_path / "coreml", "coreml", "none", str(small_data))
        assert parity["passed"] and parity["text_cosine_min"] > 0.9999

    import clipping_edge

    model = clipping_edge.load(tmp_path / "bundle")
    emb = model.encode_text(["a red circle", "a blue square"])
    assert emb.shape == (2, 32) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
