"""Image transforms: exact geometry, ImageNet normalisation, grayscale -> RGB, and augmentation
that repeats exactly under a seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from tailorkit.config.data import IMAGENET_MEAN, IMAGENET_STD, ImageTransformConfig
from tailorkit.data.image_transforms import (
    ImageTransform,
    center_crop,
    color_jitter,
    generator_for,
    hflip,
    normalize,
    random_crop,
    random_hflip,
    random_resized_crop,
    resize,
    to_pil,
    to_tensor,
)


def noise(h: int = 40, w: int = 60, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def test_eval_pipeline_shape_and_normalisation():
    out = ImageTransform(ImageTransformConfig(size=32))(noise())
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    mean_pixel = np.tile((np.array(IMAGENET_MEAN) * 255).round().astype(np.uint8), (20, 20, 1))
    flat = ImageTransform(ImageTransformConfig(size=16))(mean_pixel)
    assert flat.abs().max() < 0.01  # the mean colour normalises to about 0


def test_grayscale_becomes_three_equal_channels():
    gray = noise(c=1)
    out = ImageTransform(ImageTransformConfig(size=24, mean=(0.5,) * 3, std=(0.5,) * 3))(gray)
    assert out.shape == (3, 24, 24)
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    assert to_pil(gray).mode == "L" and to_pil(gray[:, :, 0]).mode == "L"


def test_to_tensor_and_normalize_values():
    pixels = np.array([[[0, 128, 255]]], dtype=np.uint8)
    tensor = to_tensor(to_pil(pixels))
    assert tensor.shape == (3, 1, 1) and torch.allclose(tensor.flatten(), torch.tensor([0, 128 / 255, 1]))
    normed = normalize(tensor, IMAGENET_MEAN, IMAGENET_STD).flatten()
    expected = (torch.tensor([0, 128 / 255, 1]) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(normed, expected)


def test_resize_keeps_the_aspect_ratio():
    assert resize(Image.new("RGB", (100, 50)), 20).size == (40, 20)
    assert resize(Image.new("RGB", (50, 100)), 20).size == (20, 40)
    assert resize(Image.new("L", (8, 8)), 256).size == (256, 256)  # digits are upsampled


def test_center_crop_takes_the_middle():
    pixels = np.arange(36, dtype=np.uint8).reshape(6, 6)
    cropped = np.asarray(center_crop(to_pil(pixels), 2))
    assert np.array_equal(cropped, pixels[2:4, 2:4])
    with pytest.raises(ValueError, match="cannot crop 8x8 from a 6x6 image"):
        center_crop(to_pil(pixels), 8)


def test_flip_mirrors_columns():
    pixels = noise(4, 5)
    assert np.array_equal(np.asarray(hflip(to_pil(pixels))), pixels[:, ::-1])
    g = torch.Generator().manual_seed(0)
    assert np.array_equal(np.asarray(random_hflip(to_pil(pixels), g, p=1.0)), pixels[:, ::-1])
    assert np.array_equal(np.asarray(random_hflip(to_pil(pixels), g, p=0.0)), pixels)


def test_random_crop_is_a_window_of_the_image():
    pixels = noise(10, 12)
    crop = np.asarray(random_crop(to_pil(pixels), 5, generator_for(0, 1)))
    windows = [(i, j) for i in range(6) for j in range(8) if np.array_equal(pixels[i:i + 5, j:j + 5], crop)]
    assert windows


def test_random_resized_crop_size_and_fallback():
    image = to_pil(noise(30, 50))
    assert random_resized_crop(image, 16, generator_for(0)).size == (16, 16)
    # an impossible scale range falls back to the centre box
    assert random_resized_crop(image, 8, generator_for(1), scale=(1.0, 1.0), ratio=(4.0, 4.0)).size == (8, 8)


def test_color_jitter():
    image = to_pil(noise())
    assert color_jitter(image, generator_for(0), 0.0) is image
    jittered = color_jitter(image, generator_for(0), 0.5)
    assert jittered.size == image.size and not np.array_equal(np.asarray(jittered), np.asarray(image))
    assert color_jitter(to_pil(noise(c=1)), generator_for(0), 0.5).mode == "L"


@pytest.mark.parametrize("augment", ["basic", "strong"])
def test_augmentation_repeats_under_a_seed(augment):
    train = ImageTransform(ImageTransformConfig(size=24, augment=augment), train=True)
    image = noise()
    first = train(image, generator_for(7, 0, 3))
    assert torch.equal(first, train(image, generator_for(7, 0, 3)))
    others = [train(image, generator_for(7, 0, i)) for i in range(4)]
    assert any(not torch.equal(first, o) for o in others)
    assert first.shape == (3, 24, 24)


def test_evaluation_ignores_the_generator():
    evaluate = ImageTransform(ImageTransformConfig(size=24))
    assert torch.equal(evaluate(noise(), generator_for(0)), evaluate(noise(), generator_for(1)))
    no_aug = ImageTransform(ImageTransformConfig(size=24, augment="none", hflip=False), train=True)
    assert torch.equal(no_aug(noise(), generator_for(3)), evaluate(noise()))


def test_generator_for_gives_independent_streams():
    draw = lambda *keys: torch.rand(4, generator=generator_for(*keys))  # noqa: E731
    assert torch.equal(draw(0, 1, 2), draw(0, 1, 2))
    assert not torch.equal(draw(0, 1, 2), draw(0, 2, 1))
    assert not torch.equal(draw(0, 1), draw(1, 1))


def test_defaults_are_the_imagenet_recipe():
    cfg = ImageTransformConfig()
    assert cfg.size == 224 and cfg.resize_to == 256
    assert cfg.mean == IMAGENET_MEAN and cfg.std == IMAGENET_STD


@pytest.mark.parametrize("fields, message", [
    ({"size": 32, "resize": 16}, "resize .16. must be at least size .32."),
    ({"std": (0.2, 0.0, 0.2)}, "every std must be positive"),
    ({"crop_scale": (0.5, 0.2)}, "crop_scale must satisfy"),
    ({"augment": "heavy"}, "augment"),
    ({"sizes": 3}, "sizes"),
])
def test_config_is_checked(fields, message):
    with pytest.raises(ValidationError, match=message):
        ImageTransformConfig(**fields)


def test_to_pil_rejects_what_it_cannot_show():
    with pytest.raises(ValueError, match="uint8"):
        to_pil(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        to_pil(np.zeros((4, 4, 2), dtype=np.uint8))
