"""Generation for the OpenAI-style routes: chat turns through the tokenizer's chat template
(tailorkit.generate's prompt and stop tokens), raw prompts continued as they are; the same call
streams text pieces for SSE through transformers' TextIteratorStreamer."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import torch

from tailorkit.data.templates import prompt_ids
from tailorkit.generate import stop_token_ids
from tailorkit.serve.models import Served


def chat_ids(entry: Served, messages: list[dict[str, str]]) -> list[int]:
    return prompt_ids(messages, entry.handle.tokenizer, None)


def text_ids(entry: Served, prompt: str) -> list[int]:
    return entry.handle.tokenizer(prompt, add_special_tokens=True)["input_ids"]


def _kwargs(entry: Served, ids: list[int], max_tokens: int, temperature: float, top_p: float,
            seed: int | None) -> dict:
    tokenizer = entry.handle.tokenizer
    tensor = torch.tensor([ids], device=entry.handle.device)
    greedy = temperature == 0
    if seed is not None:
        torch.manual_seed(seed)
    sampling = {} if greedy else {"temperature": temperature, "top_p": top_p}
    return {"input_ids": tensor, "attention_mask": torch.ones_like(tensor), "max_new_tokens": max_tokens,
            "do_sample": not greedy, "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": stop_token_ids(tokenizer), **sampling}


@torch.inference_mode()
def complete(entry: Served, ids: list[int], max_tokens: int, temperature: float, top_p: float,
             seed: int | None) -> tuple[str, int, str]:
    """(text, completion tokens, finish reason) of one whole generation."""
    with entry.lock:
        entry.activate()
        out = entry.handle.model.generate(**_kwargs(entry, ids, max_tokens, temperature, top_p, seed))
    new = out[0, len(ids):].tolist()
    stops = set(stop_token_ids(entry.handle.tokenizer))
    finish = "stop" if new and new[-1] in stops else "length"
    text = entry.handle.tokenizer.decode(new, skip_special_tokens=True)
    return text, len(new), finish


def stream(entry: Served, ids: list[int], max_tokens: int, temperature: float, top_p: float,
           seed: int | None) -> Iterator[str]:
    """Text pieces as they are generated; the model's lock is held until the last one."""
    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(entry.handle.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                    timeout=600)
    failure: list[BaseException] = []

    def work() -> None:
        try:
            with torch.inference_mode():
                entry.handle.model.generate(**_kwargs(entry, ids, max_tokens, temperature, top_p, seed),
                                            streamer=streamer)
        except BaseException as err:  # surfaced to the reader below, after the stream ends
            failure.append(err)
            streamer.end()

    with entry.lock:
        entry.activate()
        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        try:
            for piece in streamer:
                if piece:
                    yield piece
        finally:  # a client that hangs up: the lock stays held until this generation has ended
            thread.join()
    if failure:
        raise failure[0]
