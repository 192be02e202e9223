"""Generation for the OpenAI-style routes: chat turns through the tokenizer's chat template
(tailorkit.generate's prompt and stop tokens), raw prompts continued as they are; the same call
streams text pieces for SSE through transformers' TextIteratorStreamer. Non-streaming requests
are answered in batches (`complete_batch`, fed by serve/batching.py); streams run one by one."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from tailorkit.data.templates import prompt_ids
from tailorkit.generate import stop_token_ids
from tailorkit.serve.models import Served


def chat_ids(entry: Served, messages: list[dict[str, str]]) -> list[int]:
    return prompt_ids(messages, entry.handle.tokenizer, None)


def text_ids(entry: Served, prompt: str) -> list[int]:
    return entry.handle.tokenizer(prompt, add_special_tokens=True)["input_ids"]


def _kwargs(entry: Served, ids: list[int], max_tokens: int, temperature: float, top_p: float,
            seed: int | None, max_time: float) -> dict:
    tokenizer = entry.handle.tokenizer
    tensor = torch.tensor([ids], device=entry.handle.device)
    greedy = temperature == 0
    if seed is not None:
        torch.manual_seed(seed)
    sampling = {} if greedy else {"temperature": temperature, "top_p": top_p}
    return {"input_ids": tensor, "attention_mask": torch.ones_like(tensor), "max_new_tokens": max_tokens,
            "do_sample": not greedy, "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": stop_token_ids(tokenizer), "max_time": max_time, **sampling}


@dataclass(frozen=True)
class Ask:
    """One non-streaming request in a batched generate call."""

    ids: list[int]
    max_tokens: int


@torch.inference_mode()
def complete_batch(entry: Served, asks: list[Ask], temperature: float, top_p: float,
                   seed: int | None, max_time: float) -> list[tuple[str, int, str]]:
    """(text, completion tokens, finish reason) per request, from one `generate` call: prompts
    padded on the left (the mask hides the padding), as many new tokens as the largest
    max_tokens asks, then each answer cut at its own max_tokens and first stop token."""
    tokenizer = entry.handle.tokenizer
    stops = stop_token_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    width = max(len(a.ids) for a in asks)
    ids = torch.tensor([[pad] * (width - len(a.ids)) + a.ids for a in asks], device=entry.handle.device)
    mask = torch.tensor([[0] * (width - len(a.ids)) + [1] * len(a.ids) for a in asks],
                        device=entry.handle.device)
    greedy = temperature == 0
    sampling = {} if greedy else {"temperature": temperature, "top_p": top_p}
    with entry.lock:
        if seed is not None:
            torch.manual_seed(seed)
        entry.activate()
        out = entry.handle.model.generate(input_ids=ids, attention_mask=mask, do_sample=not greedy,
                                          max_new_tokens=max(a.max_tokens for a in asks), pad_token_id=pad,
                                          eos_token_id=stops, max_time=max_time, **sampling)
    answers = []
    for row, ask in zip(out[:, width:].tolist(), asks, strict=True):
        new = row[:ask.max_tokens]
        end = next((i + 1 for i, token in enumerate(new) if token in stops), None)
        new = new if end is None else new[:end]
        text = tokenizer.decode(new, skip_special_tokens=True)
        answers.append((text, len(new), "length" if end is None else "stop"))
    return answers


def stream(entry: Served, ids: list[int], max_tokens: int, temperature: float, top_p: float,
           seed: int | None, max_time: float, finish: list[str] | None = None) -> Iterator[str]:
    """Text pieces as they are generated; the model's lock is held until the last one. `finish`
    receives the finish reason once generation ends: "stop" at a stop token, else "length"."""
    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(entry.handle.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                    timeout=600)
    failure: list[BaseException] = []

    def work() -> None:
        try:
            with torch.inference_mode():
                out = entry.handle.model.generate(**_kwargs(entry, ids, max_tokens, temperature, top_p, seed,
                                                            max_time), streamer=streamer)
            if finish is not None:
                stops = set(stop_token_ids(entry.handle.tokenizer))
                finish.append("stop" if any(t in stops for t in out[0, len(ids):].tolist()) else "length")
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
