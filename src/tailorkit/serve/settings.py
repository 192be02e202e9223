"""The server's settings: one typed model, whose fields are also `tailor serve`'s flags."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ServeSettings(BaseModel):
    host: str = Field("127.0.0.1", description="address to bind; 0.0.0.0 exposes the server to the network")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free port)")
    max_batch_size: int = Field(32, ge=1, description="texts per model call in /v1/predict; 1 turns "
                                                      "dynamic batching off")
    max_wait_ms: float = Field(5.0, ge=0, description="how long a /v1/predict request waits for others "
                                                       "to join its batch")
    threads: int | None = Field(None, ge=1, description="torch threads for model calls; default: the "
                                                         "cores free when the server starts")
    max_texts: int = Field(64, ge=1, description="texts in one /v1/predict request")
    max_chars: int = Field(20_000, ge=1, description="characters in one text or prompt")
    max_new_tokens: int = Field(256, ge=1, description="largest max_tokens a generation request may ask")
    max_prompt_tokens: int = Field(2048, ge=1, description="largest prompt of a generation request, "
                                                            "in tokens")
    api_key_env: str = Field("TAILOR_API_KEY", description="environment variable holding the API key; "
                                                            "when it is set, requests need "
                                                            "'Authorization: Bearer KEY'")
