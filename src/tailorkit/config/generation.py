"""`generation:` — the sample answers a causal-LM run writes, and `tailor generate`'s defaults."""

from __future__ import annotations

from pydantic import Field

from tailorkit.config.base import Strict


class GenerationConfig(Strict):
    samples: int = Field(4, ge=0, description="Validation prompts answered before and after training.")
    max_new_tokens: int = Field(64, ge=1, description="Tokens per generated answer.")
    temperature: float = Field(0.7, gt=0, description="Sampling temperature (the sampled answer).")
    top_p: float = Field(0.9, gt=0, le=1, description="Nucleus sampling mass (the sampled answer).")
