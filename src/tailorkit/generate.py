"""Text generation from a causal LM handle (adapter or merged), with the tokenizer's chat template."""

from __future__ import annotations

import torch

from tailorkit.data.instructions import Conversation
from tailorkit.data.templates import prompt_ids, stop_token_ids  # stop_token_ids: also imported from here
from tailorkit.models.handle import ModelHandle


@torch.inference_mode()
def generate(handle: ModelHandle, messages: Conversation, max_new_tokens: int = 64,
             temperature: float = 0.7, top_p: float = 0.9, greedy: bool = False,
             seed: int | None = None) -> str:
    """The model's next assistant turn after `messages` (a final assistant turn is dropped)."""
    tokenizer = handle.tokenizer
    ids = torch.tensor([prompt_ids(messages, tokenizer, None)], device=handle.device)
    if seed is not None:
        torch.manual_seed(seed)
    was_training = handle.model.training
    handle.model.eval()
    sampling = {} if greedy else {"temperature": temperature, "top_p": top_p}
    out = handle.model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
        do_sample=not greedy, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=stop_token_ids(tokenizer), **sampling,
    )
    handle.model.train(was_training)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


def sample_answers(handle: ModelHandle, prompts: list[Conversation], max_new_tokens: int,
                   temperature: float, top_p: float, seed: int) -> list[dict]:
    """Greedy and sampled answers to fixed prompts: the run's before/after evidence."""
    return [{"greedy": generate(handle, p, max_new_tokens, greedy=True),
             "sampled": generate(handle, p, max_new_tokens, temperature, top_p, seed=seed + i)}
            for i, p in enumerate(prompts)]
