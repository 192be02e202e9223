"""Image preprocessing and augmentation with PIL and torch (torchvision does not import here).

Geometry (resize, crops, flips) and colour jitter run on PIL images, which is fast
on uint8 and resamples with antialiasing; the last step makes a float tensor
(3, H, W) normalised with the model's mean and std. Grayscale stays one channel
through the geometry (a third of the work) and becomes RGB at the tensor step.

Every random transform draws from an explicit `torch.Generator`, so the same
seed gives the same augmented image, whatever the worker or batch order;
`generator_for(seed, epoch, index)` makes one per sample.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageEnhance

from tailorkit.config.data import ImageTransformConfig

ImageLike = np.ndarray | Image.Image


def generator_for(seed: int, *keys: int) -> torch.Generator:
    """A generator seeded from (seed, *keys), e.g. (seed, epoch, index): independent streams
    per sample, reproducible whichever worker or order draws them."""
    state = np.random.SeedSequence([seed, *keys]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def to_pil(image: ImageLike) -> Image.Image:
    """uint8 (H, W), (H, W, 1) or (H, W, 3) arrays, or a PIL image in mode L or RGB."""
    if isinstance(image, Image.Image):
        return image if image.mode in ("L", "RGB") else image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image array, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        return Image.fromarray(array, mode="L")
    if array.ndim == 3 and array.shape[2] == 3:
        return Image.fromarray(array, mode="RGB")
    raise ValueError(f"expected an (H, W), (H, W, 1) or (H, W, 3) image, got shape {array.shape}")


def resize(image: Image.Image, shorter: int) -> Image.Image:
    """Scale so the shorter side is `shorter`, keeping the aspect ratio (bilinear, antialiased)."""
    w, h = image.size
    if min(w, h) == shorter:
        return image
    longer = max(1, int(shorter * max(w, h) / min(w, h)))
    return image.resize((shorter, longer) if w <= h else (longer, shorter), Image.Resampling.BILINEAR)


def _check_fits(image: Image.Image, size: int) -> None:
    if min(image.size) < size:
        raise ValueError(f"cannot crop {size}x{size} from a {image.size[0]}x{image.size[1]} image; "
                         "resize first")


def center_crop(image: Image.Image, size: int) -> Image.Image:
    _check_fits(image, size)
    w, h = image.size
    left, top = int(round((w - size) / 2)), int(round((h - size) / 2))
    return image.crop((left, top, left + size, top + size))


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [low, high]."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def random_crop(image: Image.Image, size: int, generator: torch.Generator | None) -> Image.Image:
    _check_fits(image, size)
    w, h = image.size
    left, top = _randint(0, w - size, generator), _randint(0, h - size, generator)
    return image.crop((left, top, left + size, top + size))


def hflip(image: Image.Image) -> Image.Image:
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def random_hflip(image: Image.Image, generator: torch.Generator | None, p: float = 0.5) -> Image.Image:
    return hflip(image) if float(torch.rand((), generator=generator)) < p else image


def random_resized_crop(image: Image.Image, size: int, generator: torch.Generator | None,
                        scale: tuple[float, float] = (0.25, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Image.Image:
    """A random box of `scale` x the area and `ratio` aspect, resized to size x size (Inception
    style, as torchvision's RandomResizedCrop: 10 tries, then the centre box of a clamped ratio)."""
    w, h = image.size
    area = w * h
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _uniform(scale[0], scale[1], generator)
        aspect = math.exp(_uniform(log_ratio[0], log_ratio[1], generator))
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = _randint(0, w - cw, generator), _randint(0, h - ch, generator)
            break
    else:
        aspect = w / h
        if aspect < ratio[0]:
            cw, ch = w, int(round(w / ratio[0]))
        elif aspect > ratio[1]:
            cw, ch = int(round(h * ratio[1])), h
        else:
            cw, ch = w, h
        left, top = (w - cw) // 2, (h - ch) // 2
    return image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + cw, top + ch))


def color_jitter(image: Image.Image, generator: torch.Generator | None, strength: float) -> Image.Image:
    """Brightness, contrast, then saturation (a no-op on grayscale), each by 1 +- strength."""
    if strength <= 0:
        return image
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        image = enhancer(image).enhance(_uniform(1 - strength, 1 + strength, generator))
    return image


def to_tensor(image: Image.Image) -> torch.Tensor:
    """float32 (3, H, W) in [0, 1]; grayscale is repeated into three channels."""
    array = np.array(image, dtype=np.uint8, copy=True)
    tensor = torch.from_numpy(array).to(torch.float32).div_(255)
    if tensor.ndim == 2:
        return tensor.unsqueeze(0).expand(3, -1, -1).contiguous()
    return tensor.permute(2, 0, 1).contiguous()


def normalize(tensor: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=tensor.dtype).view(-1, 1, 1)
    s = torch.tensor(std, dtype=tensor.dtype).view(-1, 1, 1)
    return (tensor - m) / s


class ImageTransform:
    """image -> normalised float tensor (3, size, size). `train=True` adds the configured
    augmentation; evaluation is resize + centre crop and ignores the generator."""

    def __init__(self, config: ImageTransformConfig | None = None, train: bool = False) -> None:
        self.config = config or ImageTransformConfig()
        self.train = train

    def __call__(self, image: ImageLike, generator: torch.Generator | None = None) -> torch.Tensor:
        cfg = self.config
        img = to_pil(image)
        if not self.train or cfg.augment == "none":
            img = center_crop(resize(img, cfg.resize_to), cfg.size)
        elif cfg.augment == "basic":
            img = random_crop(resize(img, cfg.resize_to), cfg.size, generator)
        else:
            img = random_resized_crop(img, cfg.size, generator, cfg.crop_scale, cfg.crop_ratio)
        if self.train and cfg.hflip:
            img = random_hflip(img, generator)
        if self.train and cfg.augment == "strong":
            img = color_jitter(img, generator, cfg.jitter)
        return normalize(to_tensor(img), cfg.mean, cfg.std)
