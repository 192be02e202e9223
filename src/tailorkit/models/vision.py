"""Image classifiers behind the same ModelHandle as text models.

A CNN's "blocks" are its ordered stages (MobileNetV2's 19 `features`), its head
is `classifier`, and it has no token embeddings: depth 1..n are the stages and
n + 1 the head, so `freeze: {top: N}`, head-only and layer-wise LR decay read
the same as for a transformer.

Models that are not Hugging Face models are saved as `model.safetensors` plus
`tailorkit_model.json` (architecture and number of classes).
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from tailorkit.errors import TailorError
from tailorkit.models.handle import ModelHandle
from tailorkit.models.mobilenet_v2 import MobileNetV2, build_mobilenet_v2

ARCH_FILE = "tailorkit_model.json"
NO_EMBEDDINGS = "\0"  # a prefix no parameter name has


def vision_handle(model: nn.Module) -> ModelHandle:
    return ModelHandle(model=model, tokenizer=None, task="classification", blocks_prefix="features.",
                       embeddings_prefix=NO_EMBEDDINGS, num_blocks=len(model.features),
                       head_modules=["classifier"], modality="image")


def load_image_classifier(name: str, num_classes: int, pretrained: bool) -> ModelHandle:
    """`mobilenet-v2` from the catalogue, a torchvision-named .pth file, or a saved run's model."""
    from tailorkit.sources import MODELS

    path = Path(name).expanduser()
    if path.is_dir() and (path / ARCH_FILE).is_file():  # a model folder of an earlier image run
        model = load_saved(path)
        model.reset_classifier(num_classes)
        return vision_handle(model)
    if path.suffix == ".pth" and path.is_file():
        weights = path
    elif name == "mobilenet-v2":
        weights = MODELS[name].path() if pretrained else None  # from scratch needs no download
    else:
        raise TailorError(f"model.name: '{name}' is not an image model (use mobilenet-v2, a "
                          "torchvision-named MobileNetV2 .pth file, or an image run's model folder)")
    return vision_handle(build_mobilenet_v2(num_classes, weights if pretrained else None))


def save_image_model(model: nn.Module, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(directory / "model.safetensors"))
    (directory / ARCH_FILE).write_text(json.dumps(
        {"architecture": "mobilenet_v2", "num_classes": model.num_classes}))


def load_saved(directory: Path) -> MobileNetV2:
    spec = json.loads((directory / ARCH_FILE).read_text())
    if spec.get("architecture") != "mobilenet_v2":
        raise TailorError(f"{directory / ARCH_FILE}: unknown architecture {spec.get('architecture')!r}")
    model = MobileNetV2(num_classes=spec["num_classes"])
    model.load_state_dict(load_file(str(directory / "model.safetensors")), strict=True)
    return model


def lora_targets(model: nn.Module) -> list[str]:
    """Where LoRA goes on a CNN: every ungrouped convolution. Depthwise convolutions (one
    filter per channel) have too little structure for a low-rank update; the head trains whole."""
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and m.groups == 1 and not name.startswith("classifier")]
