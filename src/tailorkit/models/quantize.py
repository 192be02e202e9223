"""A frozen 4-bit NF4 base for QLoRA (Dettmers et al. 2023), through bitsandbytes.

NF4 stores each block of 64 weights as 4-bit indices into the quantiles of a
normal distribution plus one scale; double quantisation stores those scales in
8 bits too (about 0.127 bits per weight instead of 0.5). Linear layers keep
their weights this way; the compute runs in fp32 (or bf16) after dequantising
block by block. bitsandbytes runs this on CPU as well as CUDA.

Merging dequantises: the merged model's base weights are exactly the 4-bit
weights the adapter was trained against, in fp32, plus the LoRA update.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

from tailorkit.errors import TailorError

# New task heads and LM heads stay full precision: the head trains, the LM head is tied.
SKIP = ["classifier", "pre_classifier", "score", "lm_head"]


def nf4_config(bf16: bool):
    if importlib.util.find_spec("bitsandbytes") is None:
        raise TailorError("model.quantize_base: nf4 needs bitsandbytes: pip install bitsandbytes "
                          "torch==2.13.0 (in one command)")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if bf16 else torch.float32,
        llm_int8_skip_modules=SKIP,
    )


def keep_fp32_inference(model: nn.Module) -> None:
    """Evaluate with the weights we train with.

    On CPUs with avx512_bf16, bitsandbytes repacks 4-bit weights into bf16 the first time a
    layer runs in eval mode without gradients: faster, but evaluation and merging would then
    see other weights than training did.
    """
    for module in model.modules():
        if is_4bit(module):
            module.support_avx512bf16_for_cpu = False


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


def dequantized_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights in fp32, 4-bit linears dequantised: what the adapter trained against."""
    import bitsandbytes.functional as bnb

    state = {}
    for name, module in model.named_modules():
        if is_4bit(module):
            weight = bnb.dequantize_4bit(module.weight.data, module.weight.quant_state)
            state[f"{name}.weight"] = weight.float()
            if module.bias is not None:
                state[f"{name}.bias"] = module.bias.detach().float()
    for name, param in model.named_parameters():
        if name not in state and param.dtype.is_floating_point:
            state[name] = param.detach().float()
    return state

