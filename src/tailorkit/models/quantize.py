"""A frozen 4-bit NF4 base for QLoRA (Dettmers et al. 2023), through bitsandbytes.

NF4 stores each block of 64 (or `block_size`) weights as 4-bit indices into the
quantiles of a normal distribution plus one scale; double quantisation stores those
scales in 8 bits too (about 0.127 bits per weight instead of 0.5 at block 64).
The compute runs in fp32 (or bf16) after dequantising block by block. bitsandbytes
runs this on CPU as well as CUDA.

The base is quantised after the methods chose what trains: every frozen linear
layer (not a task or LM head) becomes a bitsandbytes `Linear4bit`. Under LoRA with
`init: loftq` (LoftQ, Li et al. 2023) the quantisation and the LoRA start are
chosen together, alternating T times

    Q  = NF4(W - B A)          B A = best rank-r approximation of W - Q

so that Q + B A starts closer to W than Q alone. Both steps are deterministic, so
loading a saved adapter re-derives the same Q from the same W.

Merging dequantises: the merged model's base weights are exactly the 4-bit
weights the adapter was trained against, in fp32, plus the LoRA update.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch
from torch import nn

from tailorkit.config.recipe import Recipe
from tailorkit.errors import TailorError

# New task heads and LM heads stay full precision: the head trains, the LM head is tied.
SKIP = frozenset({"classifier", "pre_classifier", "score", "lm_head"})


@dataclass(frozen=True)
class NF4Spec:
    block_size: int = 64
    compute_dtype: torch.dtype = torch.float32

    @classmethod
    def of(cls, recipe: Recipe) -> NF4Spec | None:
        """QLoRA's 4-bit base, or None for a full-precision one."""
        m = recipe.model
        if m.quantize_base != "nf4":
            return None
        return cls(m.nf4_block_size, torch.bfloat16 if recipe.train.bf16 else torch.float32)


def require_bitsandbytes() -> None:
    if importlib.util.find_spec("bitsandbytes") is None:
        raise TailorError("model.quantize_base: nf4 needs bitsandbytes: pip install bitsandbytes "
                          "torch==2.13.0 (in one command)")


def quantize_frozen_linears(model: nn.Module, spec: NF4Spec, loftq_iter: int = 0) -> int:
    """Turn every frozen linear layer outside the heads into NF4; returns how many.

    A layer that is the base of a LoRA layer gets LoftQ's joint start when `loftq_iter` > 0."""
    require_bitsandbytes()
    count = 0
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if type(child) is not nn.Linear or child.weight.requires_grad or SKIP & set(name.split(".")):
                continue
            weight = child.weight.detach().float()
            if loftq_iter and child_name == "base_layer" and hasattr(parent, "lora_A"):
                weight = _loftq_start(parent, weight, spec, loftq_iter)
            setattr(parent, child_name, _linear_4bit(child, weight, spec))
            count += 1
    _own_memory(model)
    return count


def _own_memory(model: nn.Module) -> None:
    """Copy the tensors left in full precision (embeddings, norms, heads) out of the checkpoint.

    transformers maps the safetensors file and its tensors are views into that one mapping, so
    while the embeddings still point into it, every page of the fp32 linear weights read for
    quantising stays resident: 405 MB for SmolLM2, which made QLoRA's peak higher than LoRA's.
    With nothing pointing into the mapping any more, it is released."""
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if not hasattr(tensor, "quant_state"):
                tensor.data = tensor.data.clone()


def _linear_4bit(linear: nn.Linear, weight: torch.Tensor, spec: NF4Spec) -> nn.Module:
    import bitsandbytes as bnb

    layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None,
                              compute_dtype=spec.compute_dtype, compress_statistics=True,
                              quant_type="nf4")
    layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, blocksize=spec.block_size,
                                     compress_statistics=True, quant_type="nf4", module=layer
                                     )._quantize("cpu")
    if linear.bias is not None:
        layer.bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
    # Evaluate with the weights we train with. On CPUs with avx512_bf16, bitsandbytes repacks
    # 4-bit weights into bf16 the first time a layer runs in eval mode without gradients: faster,
    # but evaluation and merging would then see other weights than training did.
    layer.support_avx512bf16_for_cpu = False
    return layer


def _nf4_round_trip(weight: torch.Tensor, spec: NF4Spec) -> torch.Tensor:
    import bitsandbytes.functional as bnb

    codes, state = bnb.quantize_4bit(weight.contiguous(), blocksize=spec.block_size,
                                     compress_statistics=True, quant_type="nf4")
    return bnb.dequantize_4bit(codes, state).float()


@torch.no_grad()
def _loftq_start(lora_layer: nn.Module, weight: torch.Tensor, spec: NF4Spec, iters: int) -> torch.Tensor:
    """Set the LoRA layer's A and B to LoftQ's start; returns the weight to quantise (W - B A)."""
    (adapter,) = lora_layer.lora_A.keys()
    rank, scale = lora_layer.r[adapter], lora_layer.scaling[adapter]
    low_rank = torch.zeros_like(weight)
    for _ in range(iters):
        target = weight - low_rank
        u, s, vh = torch.linalg.svd(weight - _nf4_round_trip(target, spec), full_matrices=False)
        low_rank = (u[:, :rank] * s[:rank]) @ vh[:rank]
    # the layer adds scale * B A: split sqrt(s) between both factors and undo the scale
    root = (s[:rank] / scale).sqrt()
    lora_layer.lora_B[adapter].weight.copy_(u[:, :rank] * root)
    lora_layer.lora_A[adapter].weight.copy_(root[:, None] * vh[:rank])
    return target


def dequantize_in_place(model: nn.Module) -> None:
    """Replace every 4-bit layer by an fp32 nn.Linear holding its dequantised weight."""
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if is_4bit(child):
                linear = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
                linear.weight = nn.Parameter(dequantized_weight(child), requires_grad=False)
                if child.bias is not None:
                    linear.bias = nn.Parameter(child.bias.detach().float(), requires_grad=False)
                setattr(parent, child_name, linear)


def dequantized_weight(layer: nn.Module) -> torch.Tensor:
    import bitsandbytes.functional as bnb

    return bnb.dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()


def is_4bit(module: nn.Module) -> bool:
    return type(module).__name__ == "Linear4bit" and hasattr(module.weight, "quant_state")


def linear_weight_bytes(model: nn.Module) -> int:
    """Bytes held by the base's linear weights: 4-bit codes plus their scales, or fp32.

    An LM head tied to the input embeddings is the embedding matrix, not a linear layer of
    its own, and is not counted."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    total = 0
    for name, module in model.named_modules():
        if "lora_" in name or not isinstance(module, nn.Linear) or id(module.weight) in embeddings:
            continue
        weight = module.weight
        if is_4bit(module):
            state = weight.quant_state
            total += weight.numel() * weight.element_size() + _tensor_bytes(state.absmax)
            if state.nested and state.state2 is not None:
                total += _tensor_bytes(state.state2.absmax) + _tensor_bytes(state.state2.code)
        else:
            total += weight.numel() * weight.element_size()
    return total


def _tensor_bytes(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()
