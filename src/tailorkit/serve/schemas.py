"""Request bodies. Field limits that depend on the server's settings are checked in app.py,
which knows them; these models fix the shapes and the always-true bounds."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PredictRequest(_Body):
    """One of `texts` (with `text_pairs` for a run trained on pairs) or `images`; which one the
    run takes is checked in app.py, against the run."""

    model: str | None = Field(None, description="served run (folder name); optional with one such run")
    texts: list[str] | None = Field(None, min_length=1)
    text_pairs: list[str] | None = Field(None, min_length=1, description="second text of each pair, one "
                                                                          "per text")
    images: list[str] | None = Field(None, min_length=1, description="base64-encoded image files (PNG, "
                                                                      "JPEG, ...)")


class Message(_Body):
    role: Literal["system", "user", "assistant"]
    content: str


class _Sampling(_Body):
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = None
    stream: bool = False
    n: int = 1
    stop: str | list[str] | None = None

    # OpenAI fields the server does not implement are refused, not ignored: an answer that
    # silently ran past a stop sequence, or gave one choice of n, would look like a wrong one.
    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int) -> int:
        if n != 1:
            raise ValueError("one choice per request; n other than 1 is not supported")
        return n

    @field_validator("stop")
    @classmethod
    def _no_stop_sequences(cls, stop: str | list[str] | None) -> None:
        if stop:
            raise ValueError("stop sequences are not supported; generation ends at the model's own stop "
                             "tokens or at max_tokens")
        return None


class ChatRequest(_Sampling):
    messages: list[Message] = Field(..., min_length=1)


class CompletionRequest(_Sampling):
    prompt: str
