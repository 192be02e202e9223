"""A frozen backbone, its pooled features and a new head, as one model.

Given raw inputs (token ids or pixels) it runs backbone -> pooling -> head, so a saved
feature-extraction run predicts like any other run. Given `features` (the cache), it runs only
the head: training never touches the backbone. The backbone stays in eval mode (dropout off,
batch-norm statistics fixed), so its output is the deterministic function the cache assumes.

Saved as the head only (head.safetensors or head.skops, plus features.json); the backbone is
the recipe's base model, rebuilt on load.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tailorkit.errors import TailorError
from tailorkit.models.handle import ModelHandle
from tailorkit.models.sklearn_heads import SklearnHead

SPEC_FILE = "features.json"
TORCH_HEAD_FILE = "head.safetensors"
NOWHERE = "\0"  # a prefix no parameter name has
LEGACY_OUTPUT = {"classification": "classes", "regression": "scalar"}


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(N, T, H) token states -> (N, H): the first token, or the mean over non-padding tokens."""
    if pooling == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


class Standardize(nn.Module):
    """Zero mean, unit variance per feature, with statistics of the train features (kept in the
    saved head). A from-scratch MobileNetV2 gives features near 1e-10 and BERT a few huge
    dimensions; a linear probe learns from neither at a sane learning rate without this."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, features: torch.Tensor) -> None:
        std = features.std(0) if len(features) > 1 else torch.ones_like(self.std)
        self.mean.copy_(features.mean(0))
        self.std.copy_(torch.where(std > 0, std, torch.ones_like(std)))  # a constant feature stays put

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std


def build_head(spec: dict) -> nn.Module:
    dim, out = spec["feature_dim"], spec["num_outputs"]
    if spec["head"] == "linear":
        layers = [nn.Linear(dim, out)]
    elif spec["head"] == "mlp":
        layers = [nn.Linear(dim, spec["hidden"]), nn.ReLU(), nn.Dropout(spec["dropout"]),
                  nn.Linear(spec["hidden"], out)]
    else:
        return SklearnHead(spec["head"], spec["output"], out)
    return nn.Sequential(Standardize(dim) if spec["standardize"] else nn.Identity(), *layers)


class FeatureModel(nn.Module):
    def __init__(self, backbone: nn.Module, modality: str, head: nn.Module, spec: dict) -> None:
        super().__init__()
        self.backbone, self.modality, self.head, self.spec = backbone, modality, head, spec
        self.backbone.requires_grad_(False)
        self.backbone.eval()

    def train(self, mode: bool = True) -> FeatureModel:
        super().train(mode)
        self.backbone.eval()
        return self

    def extract(self, **inputs: torch.Tensor) -> torch.Tensor:
        """The pooled features of a raw batch (MobileNetV2: its 1280-d global average pool)."""
        if self.modality == "image":
            if hasattr(self.backbone, "forward_features"):
                return self.backbone.forward_features(inputs["pixel_values"])
            # a Hugging Face classifier whose head is now the identity: its "logits" are the
            # pooled features the head would have read (ViT: [CLS]; ResNet: the average pool)
            return self.backbone(pixel_values=inputs["pixel_values"]).logits.flatten(1)
        out = self.backbone(**inputs)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        return pool(hidden, inputs["attention_mask"], self.spec["pooling"])

    def forward(self, features: torch.Tensor | None = None, **inputs: torch.Tensor) -> torch.Tensor:
        if features is None:
            with torch.no_grad():
                features = self.extract(**inputs)
        return self.head(features)

    def fit_scaling(self, train_features: torch.Tensor) -> None:
        """Set a Standardize head's statistics from the train features (other heads: nothing)."""
        first = self.head[0] if isinstance(self.head, nn.Sequential) else None
        if isinstance(first, Standardize):
            first.fit(train_features)

    def save_head(self, directory: Path) -> None:
        (directory / SPEC_FILE).write_text(json.dumps(self.spec, indent=2))
        if isinstance(self.head, SklearnHead):
            self.head.save(directory)
        else:
            save_file({k: v.contiguous() for k, v in self.head.state_dict().items()},
                      str(directory / TORCH_HEAD_FILE))


def feature_dim(base: ModelHandle) -> int:
    if base.modality == "image":
        classifier = base.model.classifier
        last = classifier[-1] if isinstance(classifier, nn.Sequential) else classifier
        return last.in_features  # MobileNetV2: Dropout + Linear; ViT: Linear; ResNet: Flatten + Linear
    return base.model.config.hidden_size


def feature_handle(base: ModelHandle, spec: dict) -> ModelHandle:
    """`base` (a freshly built recipe model) cut to its backbone, under a new head from `spec`.

    The whole backbone counts as depth 0 (embeddings) and the head as the head."""
    model = base.model
    if base.modality == "image":
        model.classifier = nn.Identity()  # the ImageNet/random classifier is replaced by the head
        backbone = model
    else:
        backbone = model.base_model  # BertModel under BertForSequenceClassification
    fm = FeatureModel(backbone, base.modality, build_head(spec), spec)
    return ModelHandle(model=fm, tokenizer=base.tokenizer, output=base.output, blocks_prefix=NOWHERE,
                       embeddings_prefix="backbone.", num_blocks=0, head_modules=["head"],
                       modality=base.modality)


def load_feature_handle(base: ModelHandle, directory: Path) -> ModelHandle:
    """A saved feature-extraction run: `base` is the recipe's model, rebuilt by the caller."""
    spec = json.loads((directory / SPEC_FILE).read_text())
    if "task" in spec:  # written before 2026-11-30: the head's task instead of its output kind
        spec["output"] = LEGACY_OUTPUT[spec.pop("task")]
    if spec["feature_dim"] != feature_dim(base):
        raise TailorError(f"{directory / SPEC_FILE}: the head expects {spec['feature_dim']} features, "
                          f"but the recipe's model gives {feature_dim(base)}; was model.name changed?")
    handle = feature_handle(base, spec)
    head = handle.model.head
    if isinstance(head, SklearnHead):
        head.load(directory)
    else:
        head.load_state_dict(load_file(str(directory / TORCH_HEAD_FILE)), strict=True)
    return handle
