"""MobileNetV2 without torchvision: torchvision's names and shapes, strict loading of the ImageNet
weights, and a pretrained model that really recognises an image."""

from __future__ import annotations

import datetime

import pytest
import torch
from torch import nn

from tailorkit.errors import TailorError
from tailorkit.models.mobilenet_v2 import (
    FEATURE_DIM,
    MobileNetV2,
    build_mobilenet_v2,
    load_imagenet_weights,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Convolutions on 2 threads crawl while the other core is busy (see DESIGN.md)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def random_model() -> MobileNetV2:
    torch.manual_seed(0)
    return MobileNetV2(num_classes=10).eval()


def test_torchvision_names_and_size(random_model):
    state = MobileNetV2().state_dict()
    assert len(state) == 314  # as torchvision's mobilenet_v2, buffers included
    expected = {
        "features.0.0.weight": (32, 3, 3, 3), "features.0.1.running_var": (32,),
        "features.1.conv.0.0.weight": (32, 1, 3, 3), "features.1.conv.1.weight": (16, 32, 1, 1),
        "features.2.conv.0.0.weight": (96, 16, 1, 1), "features.2.conv.3.bias": (24,),
        "features.17.conv.2.weight": (320, 960, 1, 1), "features.18.0.weight": (1280, 320, 1, 1),
        "classifier.1.weight": (1000, 1280), "classifier.1.bias": (1000,),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert sum(p.numel() for p in MobileNetV2().parameters()) == 3_504_872  # torchvision's count


def test_structure_for_the_model_handle(random_model):
    assert len(random_model.blocks) == 19 and random_model.blocks is random_model.features
    assert isinstance(random_model.head, nn.Linear) and random_model.head.out_features == 10
    names = [n for n, _ in random_model.named_parameters()]
    assert all(n.startswith((MobileNetV2.blocks_prefix, MobileNetV2.head_name + ".")) for n in names)
    residual = [b.use_res_connect for b in random_model.blocks[1:18]]
    assert sum(residual) == 10  # the repeats after each stage's first block


def test_output_shapes(random_model):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert random_model.forward_features(x).shape == (2, FEATURE_DIM)
        assert random_model(x).shape == (2, 10)
        assert random_model(pixel_values=x).shape == (2, 10)


def test_reset_classifier_keeps_the_backbone(random_model):
    model = MobileNetV2(num_classes=5)
    before = {k: v.clone() for k, v in model.features.state_dict().items()}
    model.reset_classifier(3)
    assert model.num_classes == 3 and model.head.weight.shape == (3, FEATURE_DIM)
    assert not model.head.bias.detach().any()
    assert all(torch.equal(before[k], v) for k, v in model.features.state_dict().items())
    with pytest.raises(TailorError, match="num_classes"):
        model.reset_classifier(0)


def test_state_dict_round_trip(tmp_path):
    torch.manual_seed(1)
    source = MobileNetV2()
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    model = build_mobilenet_v2(7, path)
    assert model.num_classes == 7
    x = torch.randn(1, 3, 32, 32)
    source.eval(), model.eval()
    with torch.no_grad():
        assert torch.equal(source.forward_features(x), model.forward_features(x))


def test_bad_weight_files(tmp_path):
    model = MobileNetV2()
    with pytest.raises(TailorError, match=r"file not found: .*nothing\.pth"):
        load_imagenet_weights(model, tmp_path / "nothing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(TailorError, match=r"garbage\.pth: cannot read as a PyTorch state dict"):
        load_imagenet_weights(model, garbage)
    arbitrary = tmp_path / "arbitrary.pth"  # weights_only: pickled objects other than tensors are refused
    torch.save({"when": datetime.date(2020, 1, 1)}, arbitrary)
    with pytest.raises(TailorError, match=r"arbitrary\.pth: cannot read as a PyTorch state dict"):
        load_imagenet_weights(model, arbitrary)
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(TailorError, match=r"tensor\.pth: holds a Tensor, not a state dict"):
        load_imagenet_weights(model, tensor)
    partial = tmp_path / "partial.pth"
    state = MobileNetV2().state_dict()
    del state["features.3.conv.1.0.weight"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, partial)
    with pytest.raises(TailorError, match=r"missing features\.3\.conv\.1\.0\.weight \(1\); unexpected extra"):
        load_imagenet_weights(model, partial)


# -- the real ImageNet weights (skipped without the package) --------------------------------------


@pytest.fixture(scope="module")
def pretrained(mobilenet_weights) -> MobileNetV2:
    model = MobileNetV2()
    load_imagenet_weights(model, mobilenet_weights)
    return model.eval()


def test_catalogue_gives_the_weights_file(mobilenet_weights):
    assert mobilenet_weights.name == "mobilenet_v2-b0353104.pth" and mobilenet_weights.is_file()


def test_pretrained_batch_norm_statistics_are_loaded(pretrained):
    norms = [m for m in pretrained.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 52
    for bn in norms:  # defaults would be mean 0, var 1, weight 1, bias 0
        assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
        assert not torch.allclose(bn.weight, torch.ones_like(bn.weight))


def test_pretrained_recognises_a_palace(pretrained):
    """scikit-learn's sample photo of the Summer Palace: ImageNet class 698 (palace), then 663
    (monastery), with the standard resize 256 / centre crop 224 / ImageNet normalisation."""
    from sklearn.datasets import load_sample_image

    from tailorkit.data.image_transforms import ImageTransform

    x = ImageTransform()(load_sample_image("china.jpg"))[None]
    with torch.no_grad():
        first = pretrained(x)
        again = pretrained(x)
    assert torch.equal(first, again)  # eval mode is deterministic (dropout off, BN frozen)
    probs = first.softmax(-1)[0]
    assert probs.argmax().item() == 698 and probs[698] > 0.5
    assert 663 in probs.topk(5).indices.tolist()


def test_build_replaces_only_the_head(pretrained, mobilenet_weights):
    torch.manual_seed(0)
    model = build_mobilenet_v2(10, mobilenet_weights).eval()
    assert model.num_classes == 10
    reference = pretrained.state_dict()
    assert all(torch.equal(reference[k], v) for k, v in model.state_dict().items()
               if not k.startswith("classifier."))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.forward_features(x), pretrained.forward_features(x))
        assert model(x).shape == (2, 10)
