"""`model:` — which pretrained model, and how it is loaded."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tailorkit.config.base import Strict


class ModelConfig(Strict):
    name: str = Field(description="Catalogue name (e.g. minilm-l6) or a local Hugging Face folder.")
    max_length: int = Field(128, ge=8, le=8192, description="Tokens per example; longer is cut.")
    trust_remote_code: bool = Field(False, description="Run model code shipped with the folder.")
    pretrained: bool = Field(True, description="image models: false starts the same architecture "
                                                "from random weights (to measure the transfer gain).")
    quantize_base: Literal["none", "nf4"] = Field(
        "none", description="nf4: keep the frozen base's linear weights in 4-bit NF4 with double "
                            "quantisation (QLoRA; needs the lora method).")
    nf4_block_size: Literal[32, 64, 128] = Field(
        64, description="nf4: weights per scale; 32 is more precise and costs 1/32 bit per weight.")
