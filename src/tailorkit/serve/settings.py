"""The server's settings: one typed model, whose fields are also `tailor serve`'s flags."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ServeSettings(BaseModel):
    host: str = Field("127.0.0.1", description="address to bind; 0.0.0.0 exposes the server to the network")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free port)")
    max_batch_size: int = Field(32, ge=1, description="inputs per model call in /v1/predict, and "
                                                      "non-streaming requests per generate call; 1 turns "
                                                      "dynamic batching off")
    max_wait_ms: float = Field(5.0, ge=0, description="how long a request waits for others to join its "
                                                       "batch")
    threads: int | None = Field(None, ge=1, description="torch threads for model calls; default: the "
                                                         "cores free when the server starts")
    max_texts: int = Field(64, ge=1, description="texts in one /v1/predict request")
    max_chars: int = Field(20_000, ge=1, description="characters in one text or prompt")
    max_images: int = Field(16, ge=1, description="images in one /v1/predict request")
    max_image_bytes: int = Field(8_000_000, ge=1, description="bytes of one image file (before base64)")
    max_image_pixels: int = Field(16_777_216, ge=1, description="pixels (width x height) of one image")
    max_new_tokens: int = Field(256, ge=1, description="largest max_tokens a generation request may ask")
    max_prompt_tokens: int = Field(2048, ge=1, description="largest prompt of a generation request, "
                                                            "in tokens")
    request_timeout: float = Field(120.0, gt=0, description="seconds a request may take: a longer one gets "
                                                            "504, and its generation stops then")
    api_key_env: str = Field("TAILOR_API_KEY", description="environment variable holding the API key; "
                                                            "when it is set, requests need "
                                                            "'Authorization: Bearer KEY'")
