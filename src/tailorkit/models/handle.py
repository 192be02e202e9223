"""ModelHandle: one interface over model families.

Methods never reach into a model's attribute names. They ask the handle for the
ordered blocks, the embeddings and the head, and for the depth of a parameter
(0 = embeddings, 1..n = blocks, n+1 = head). Freezing, layer-wise learning
rates and gradual unfreezing then work the same on any family that fills in
this interface.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from tailorkit.errors import TailorError
from tailorkit.models.structure import has_structure, load_restructured, write_structure

# What a batch carries for the loss rather than for the model: the targets, and a teacher's
# logits when a method distils (methods/distill.py).
LOSS_KEYS = frozenset({"labels", "teacher_logits", "teacher_logprobs", "teacher_tokens"})
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def find_blocks(root: nn.Module) -> tuple[str, nn.ModuleList]:
    """The longest ModuleList of same-class modules: the transformer layers."""
    best: tuple[str, nn.ModuleList] | None = None
    for name, module in root.named_modules():
        same_kind = isinstance(module, nn.ModuleList) and len({type(m) for m in module}) == 1
        if same_kind and (best is None or len(module) > len(best[1])):
            best = (name, module)
    if best is None:
        raise TailorError(f"{type(root).__name__}: no repeated block list found")
    return best


@dataclass
class ModelHandle:
    """A model plus the structural facts methods need."""

    model: nn.Module
    tokenizer: object
    output: str  # what it predicts: classes, scalar, next_token or masked_token
    blocks_prefix: str  # e.g. "bert.encoder.layer."
    embeddings_prefix: str  # e.g. "bert.embeddings."
    num_blocks: int
    head_modules: list[str] = field(default_factory=list)  # the task head, e.g. ["classifier"]
    wrapper_prefix: str = ""  # set while a wrapper (PEFT) holds the model
    modality: str = "text"  # "image" for CNNs: inputs are pixel_values, not tokens
    extra: dict = field(default_factory=dict)  # per-method state (e.g. unfreezing schedule)
    # Layers shrunk in a way the config cannot say (attention heads pruned): saved with
    # structure.json (models/structure.py).
    reshaped: bool = False
    # How a model that is not a Hugging Face model saves itself (models/vision.py: MobileNetV2).
    save_fn: Callable[[nn.Module, Path], None] | None = None

    def depth(self, param_name: str) -> int:
        if param_name.startswith(self.embeddings_prefix):
            return 0
        if param_name.startswith(self.blocks_prefix):
            return int(param_name[len(self.blocks_prefix):].split(".")[0]) + 1
        return self.num_blocks + 1

    def rebase(self, inner: nn.Module) -> None:
        """The model was wrapped (e.g. by PEFT): prefixes move under the wrapper's path to `inner`."""
        path = next(n for n, m in self.model.named_modules() if m is inner)
        self.wrapper_prefix = path + "." if path else ""
        self.blocks_prefix = self.wrapper_prefix + self.blocks_prefix
        self.embeddings_prefix = self.wrapper_prefix + self.embeddings_prefix

    def unwrap(self, model: nn.Module) -> None:
        """Undo `rebase` once the wrapper is merged away and `model` is the plain model again."""
        self.model = model
        self.blocks_prefix = self.blocks_prefix.removeprefix(self.wrapper_prefix)
        self.embeddings_prefix = self.embeddings_prefix.removeprefix(self.wrapper_prefix)
        self.wrapper_prefix = ""

    def is_head(self, param_name: str) -> bool:
        return self.depth(param_name) == self.num_blocks + 1

    def weight_layers(self, include_head: bool = False) -> list[tuple[str, nn.Module]]:
        """The linear and convolution layers (what magnitude pruning ranks); the head's only
        with `include_head`."""
        return [(name, m) for name, m in self.model.named_modules()
                if isinstance(m, nn.Linear | nn.Conv2d)
                and (include_head or not self.is_head(f"{name}.weight"))]

    def named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return list(self.model.named_parameters())

    def set_trainable(self, predicate) -> None:
        for name, p in self.model.named_parameters():
            p.requires_grad_(bool(predicate(name)))

    def trainable_names(self) -> list[str]:
        return [n for n, p in self.model.named_parameters() if p.requires_grad]

    def count_parameters(self) -> tuple[int, int]:
        params = list(self.model.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    @property
    def device(self) -> torch.device:
        """Where the model's parameters are (train.device moved them there)."""
        first = next(self.model.parameters(), None)
        return first.device if first is not None else torch.device("cpu")

    @property
    def blocks(self) -> nn.Module:
        """The ordered blocks (a ModuleList or Sequential), wherever a wrapper put them."""
        return self.model.get_submodule(self.blocks_prefix.rstrip("."))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        device = self.device  # inputs follow the model (a no-op where they already are)
        inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v
                  for k, v in batch.items() if k not in LOSS_KEYS}
        if self.output == "next_token" and self.model.training:
            inputs["use_cache"] = False  # training never reads a key/value cache back
        out = self.model(**inputs)
        return getattr(out, "logits", out)  # Hugging Face models wrap logits; plain modules do not

    def save(self, directory: Path) -> None:
        if self.save_fn is not None:
            self.save_fn(self.model, directory)
            return
        if self.tokenizer is None:  # a Hugging Face image model: the recipe holds its transforms
            self.model.save_pretrained(directory, safe_serialization=True)
            return
        self.model.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)
        if self.reshaped:
            write_structure(self.model, directory)


def weight_sparsity(layers: list[tuple[str, nn.Module]]) -> dict:
    """The share of zero weights in `layers` (from `ModelHandle.weight_layers`), overall and
    per layer: what magnitude pruning really left."""
    zeros = {name: int((m.weight == 0).sum()) for name, m in layers}
    sizes = {name: m.weight.numel() for name, m in layers}
    return {"sparsity": round(sum(zeros.values()) / sum(sizes.values()), 6),
            "layers": {name: round(zeros[name] / sizes[name], 4) for name in zeros}}


def _check_weights(path: Path) -> None:
    if not path.is_dir():
        raise TailorError(f"model.name: {path} is not a folder")
    if not (path / "config.json").is_file():
        raise TailorError(f"model.name: {path} has no config.json; it is not a Hugging Face model")
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        raise TailorError(
            f"model.name: {path} has no weights (expected one of: {', '.join(WEIGHT_FILES)})"
        )


def load_text_classifier(
    path: Path, output: str, labels: list[str], trust_remote_code: bool = False) -> ModelHandle:
    """A sequence classifier (`output` classes, a new head sized to `labels`) or regressor
    (`output` scalar, one output) from a local folder."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    _check_weights(path)
    hf_logging.set_verbosity_error()  # "newly initialised head" is expected, not news
    hf_logging.disable_progress_bar()  # per-tensor loading bars bury our own one-line messages
    logging.getLogger("transformers").setLevel(logging.ERROR)
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    existing = getattr(config, "id2label", None) or {}
    same_head = [existing.get(i) for i in range(len(existing))] == labels and output == "classes"
    kwargs: dict = {"num_labels": len(labels) if output == "classes" else 1}
    if output == "classes":
        kwargs["id2label"] = dict(enumerate(labels))
        kwargs["label2id"] = {name: i for i, name in enumerate(labels)}
        kwargs["problem_type"] = "single_label_classification"
    else:
        kwargs["problem_type"] = "regression"
    if has_structure(path):  # a head-pruned model (recovery): its shapes are in structure.json
        if not same_head and output == "classes":
            classes = [existing.get(i) for i in range(len(existing))]
            raise TailorError(f"model.name: {path} had its attention heads pruned for the classes "
                              f"{classes}; train it on the same classes")
        model = load_restructured("AutoModelForSequenceClassification", path, trust_remote_code)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            path, trust_remote_code=trust_remote_code, ignore_mismatched_sizes=not same_head,
            dtype=torch.float32, **kwargs
        )
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:  # decoder tokenisers often lack one
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    handle = handle_for(model, tokenizer, output)
    handle.reshaped = has_structure(path)  # saved again with its structure
    return handle


def load_masked_lm(path: Path, trust_remote_code: bool = False) -> ModelHandle:
    """An encoder with its masked-LM head (newly initialised if the folder lacks one)."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    _check_weights(path)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    model = AutoModelForMaskedLM.from_pretrained(path, trust_remote_code=trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.mask_token_id is None:
        raise TailorError(f"model.name: {path}: the tokenizer has no mask token; task mlm needs one")
    return handle_for(model, tokenizer, "masked_token")


def load_causal_lm(path: Path, trust_remote_code: bool = False) -> ModelHandle:
    """A decoder LM from a local folder, with its language-model head (tied or not)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    _check_weights(path)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if has_structure(path):  # attention heads pruned: the config no longer says the shapes
        model = load_restructured("AutoModelForCausalLM", path, trust_remote_code)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code,
                                                     dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:  # padding positions are masked out of the loss anyway
        tokenizer.pad_token = tokenizer.eos_token
    handle = handle_for(model, tokenizer, "next_token")
    handle.reshaped = has_structure(path)  # saved again with its structure
    return handle


def handle_for(model: nn.Module, tokenizer: object, output: str) -> ModelHandle:
    blocks_name, blocks = find_blocks(model)
    embeddings = model.get_input_embeddings()
    emb_name = next(n for n, m in model.named_modules() if m is embeddings)
    # BERT keeps position/type embeddings and a norm beside the word embeddings, so
    # the parent module is "the embeddings" -- unless it also holds the blocks (Llama).
    parent = emb_name.rpartition(".")[0] or emb_name
    emb_prefix = (emb_name if blocks_name.startswith(parent + ".") else parent) + "."
    backbone = blocks_name.partition(".")[0]
    head = [n for n, m in model.named_children() if n != backbone and any(True for _ in m.parameters())]
    if output in ("next_token", "masked_token"):
        head = []  # the LM head is pretrained (often tied to the embeddings), not a new head
    return ModelHandle(
        model=model, tokenizer=tokenizer, output=output, blocks_prefix=blocks_name + ".",
        embeddings_prefix=emb_prefix, num_blocks=len(blocks), head_modules=head,
    )
