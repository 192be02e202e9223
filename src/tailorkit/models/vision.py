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
from tailorkit.models.handle import ModelHandle, find_blocks
from tailorkit.models.mobilenet_v2 import MobileNetV2, build_mobilenet_v2
from tailorkit.sources import MODELS

ARCH_FILE = "tailorkit_model.json"
NO_EMBEDDINGS = "\0"  # a prefix no parameter name has


def vision_handle(model: nn.Module) -> ModelHandle:
    return ModelHandle(model=model, tokenizer=None, output="classes", blocks_prefix="features.",
                       embeddings_prefix=NO_EMBEDDINGS, num_blocks=len(model.features),
                       head_modules=["classifier"], modality="image", save_fn=save_image_model)


def hf_vision_handle(model: nn.Module) -> ModelHandle:
    """A Hugging Face image classifier (ViT, ConvNeXt, ResNet...): its repeated blocks, its
    patch embeddings where it has them, and the head outside the backbone."""
    blocks_name, blocks = find_blocks(model)
    backbone = blocks_name.partition(".")[0]
    try:
        embeddings = model.get_input_embeddings()
        emb_prefix = next(n for n, m in model.named_modules() if m is embeddings) + "."
    except (NotImplementedError, AttributeError, StopIteration):
        emb_prefix = NO_EMBEDDINGS
    head = [n for n, m in model.named_children() if n != backbone and any(True for _ in m.parameters())]
    return ModelHandle(model=model, tokenizer=None, output="classes",
                       blocks_prefix=blocks_name + ".", embeddings_prefix=emb_prefix,
                       num_blocks=len(blocks), head_modules=head, modality="image")


def load_hf_image_classifier(path: Path, num_classes: int, trust_remote_code: bool = False) -> ModelHandle:
    from transformers import AutoModelForImageClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    model = AutoModelForImageClassification.from_pretrained(
        path, num_labels=num_classes, ignore_mismatched_sizes=True, trust_remote_code=trust_remote_code)
    return hf_vision_handle(model)


def load_image_classifier(name: str, labels: list[str], pretrained: bool,
                          trust_remote_code: bool = False) -> ModelHandle:
    """`mobilenet-v2` from the catalogue, a torchvision-named .pth file, a saved run's model, or
    a Hugging Face image classifier folder (a new head sized to the classes). A saved run's model
    keeps its head when it was trained on the same classes (recovery after pruning)."""
    num_classes = len(labels)
    path = Path(name).expanduser()
    if path.is_dir() and (path / ARCH_FILE).is_file():  # a model folder of an earlier image run
        model = load_saved(path)
        saved = path / "labels.json"
        if not saved.is_file() or json.loads(saved.read_text()) != labels:
            model.reset_classifier(num_classes)
        return vision_handle(model)
    if path.is_dir() and (path / "config.json").is_file():
        if not pretrained:
            raise TailorError("model.pretrained: false is only supported for mobilenet-v2")
        return load_hf_image_classifier(path, num_classes, trust_remote_code)
    if path.suffix == ".pth" and path.is_file():
        weights = path
    elif name == "mobilenet-v2":
        weights = MODELS[name].path() if pretrained else None  # from scratch needs no download
    else:
        raise TailorError(f"model.name: '{name}' is not an image model (use mobilenet-v2, a "
                          "torchvision-named MobileNetV2 .pth file, a Hugging Face image classifier "
                          "folder, or an image run's model folder)")
    return vision_handle(build_mobilenet_v2(num_classes, weights if pretrained else None))


def save_image_model(model: nn.Module, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(directory / "model.safetensors"))
    (directory / ARCH_FILE).write_text(json.dumps(
        {"architecture": "mobilenet_v2", "num_classes": model.num_classes, "hidden": model.hidden_widths}))


def load_saved(directory: Path) -> MobileNetV2:
    spec = json.loads((directory / ARCH_FILE).read_text())
    if spec.get("architecture") != "mobilenet_v2":
        raise TailorError(f"{directory / ARCH_FILE}: unknown architecture {spec.get('architecture')!r}")
    model = MobileNetV2(num_classes=spec["num_classes"], hidden=spec.get("hidden"))
    model.load_state_dict(load_file(str(directory / "model.safetensors")), strict=True)
    return model


def lora_targets(model: nn.Module, head_modules: list[str]) -> list[str]:
    """Where LoRA goes on an image model: every linear layer (ViT) and every ungrouped
    convolution (CNNs). Depthwise convolutions (one filter per channel) have too little
    structure for a low-rank update; the head trains whole."""
    def in_head(name: str) -> bool:
        return any(name == h or name.startswith(h + ".") for h in head_modules)

    return [name for name, m in model.named_modules() if not in_head(name) and (
        isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1))]
