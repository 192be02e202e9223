"""The FastAPI app over the served runs. Errors are JSON `{"error": {"message", "type"}}` (the
shape OpenAI clients read) with a 4xx status naming what was wrong."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import secrets
import time
import uuid
from collections.abc import Awaitable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import iterate_in_threadpool, run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tailorkit.data.images import BadImage, ImageTooLarge, decode_image
from tailorkit.errors import TailorError
from tailorkit.serve import generation
from tailorkit.serve.batching import Batcher
from tailorkit.serve.models import Served, describe
from tailorkit.serve.prometheus import CONTENT_TYPE, exposition, registry_for
from tailorkit.serve.schemas import ChatRequest, CompletionRequest, PredictRequest
from tailorkit.serve.settings import ServeSettings
from tailorkit.serve.stats import Stats


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


def create_app(models: dict[str, Served], settings: ServeSettings) -> FastAPI:
    stats = Stats()
    registry = registry_for(stats, settings.max_batch_size)
    batcher = Batcher(lambda name, _key, inputs: models[name].predict(inputs), settings.max_batch_size,
                      settings.max_wait_ms, lambda size: stats.batch(size, "predict"))
    generations = Batcher(lambda name, key, asks: generation.complete_batch(models[name], asks, *key[:3],
                                                                            settings.request_timeout),
                          settings.max_batch_size, settings.max_wait_ms,
                          lambda size: stats.batch(size, "generate"))
    api_key = os.environ.get(settings.api_key_env) or None
    max_body = _max_body(models, settings)
    routes = {"/health", "/metrics", "/metrics.json", "/v1/models", "/v1/predict", "/v1/chat/completions",
              "/v1/completions"}

    @asynccontextmanager
    async def lifespan(_app):
        yield
        await batcher.stop()
        await generations.stop()

    app = FastAPI(title="tailorkit", lifespan=lifespan)

    @app.middleware("http")
    async def guard_and_count(request: Request, call_next):
        started = time.perf_counter()
        route = request.url.path if request.url.path in routes else "(other)"  # bounded metric keys
        length = request.headers.get("content-length", "0")
        if not length.isdigit() or int(length) > max_body:
            stats.request(route, 413, time.perf_counter() - started)
            return _error(413, f"request body of {length} bytes; the limit is {max_body} "
                               "(from --max-texts and --max-chars)")
        if api_key and request.url.path.startswith("/v1/"):
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                response = _error(401, f"missing or wrong API key: send 'Authorization: Bearer <key>' "
                                       f"(the key is in ${settings.api_key_env} on the server)",
                                  "authentication_error")
                stats.request(route, 401, time.perf_counter() - started)
                return response
        response = await call_next(request)
        # pick() names the served model it chose (never an unknown name: bounded metric labels)
        model = request.scope.get("state", {}).get("model", "")
        stats.request(route, response.status_code, time.perf_counter() - started, model)
        return response

    @app.exception_handler(RequestValidationError)
    async def bad_body(request: Request, err: RequestValidationError):
        named = err.body.get("model") if isinstance(err.body, dict) else None
        if isinstance(named, str) and named in models:  # counted under the model it asked for
            request.state.model = named
        first = err.errors()[0]
        if first.get("type") == "json_invalid":
            return _error(400, f"malformed JSON body: {first.get('ctx', {}).get('error', first['msg'])}")
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        if where == "body" and first.get("type") in ("model_attributes_type", "dict_type", "missing"):
            return _error(400, "body: send a JSON object with header 'Content-Type: application/json' "
                               f"({first['msg']})")
        return _error(400, f"{where}: {first['msg']}")

    @app.exception_handler(ApiError)
    async def api_error(_request, err: ApiError):
        return _error(err.status, err.message, err.kind)

    @app.exception_handler(TailorError)
    async def tailor_error(_request, err: TailorError):
        return _error(400, str(err))

    async def within(answer: Awaitable, what: str):
        """The answer, or a 504 once the request has taken --request-timeout seconds."""
        try:
            return await asyncio.wait_for(answer, settings.request_timeout)
        except TimeoutError:
            raise ApiError(504, f"{what} took longer than {settings.request_timeout:g} s, the server's "
                                "--request-timeout; send fewer inputs or ask fewer tokens",
                           "timeout_error") from None

    def pick(request: Request, name: str | None, generates: bool) -> Served:
        entry = _choose(name, generates)
        request.state.model = entry.name
        return entry

    def _choose(name: str | None, generates: bool) -> Served:
        fitting = {n: m for n, m in models.items() if m.generates == generates}
        what = "causal-LM" if generates else "classification/regression/image"
        if name is None:
            if len(fitting) == 1:
                return next(iter(fitting.values()))
            raise ApiError(400, f"model: name one of the served {what} runs ({', '.join(fitting) or 'none'})")
        if name not in models:
            raise ApiError(404, f"model '{name}' is not served (served: {', '.join(models)})",
                           "not_found_error")
        if name not in fitting:
            raise ApiError(400, f"model '{name}' is not a {what} run; this route does not fit it")
        return models[name]

    def check_text(text: str, where: str) -> None:
        if not text.strip():
            raise ApiError(400, f"{where}: empty text")
        if len(text) > settings.max_chars:
            raise ApiError(413, f"{where}: {len(text)} characters; the limit is {settings.max_chars}")

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": list(models)}

    @app.get("/metrics")
    async def metrics():
        return Response(exposition(registry), media_type=CONTENT_TYPE)

    @app.get("/metrics.json")
    async def metrics_json():
        return stats.snapshot() | {"settings": settings.model_dump(exclude={"api_key_env"})}

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [describe(m) for m in models.values()]}

    @app.post("/v1/predict")
    async def predict(body: PredictRequest, request: Request):
        entry = pick(request, body.model, generates=False)
        inputs = await (image_inputs(entry, body) if entry.inputs == "images" else text_inputs(entry, body))
        rows = await within(batcher.submit(entry.name, inputs), "the prediction")
        return {"model": entry.name, "predictions": rows}

    async def text_inputs(entry: Served, body: PredictRequest) -> list:
        """The texts, or (text, second text) pairs for a run trained on pairs, checked."""
        if body.images is not None:
            raise ApiError(400, f"images: model '{entry.name}' is a text run; send texts")
        if body.texts is None:
            raise ApiError(400, "texts: Field required")
        if len(body.texts) > settings.max_texts:
            raise ApiError(413, f"texts: {len(body.texts)} texts; the limit is {settings.max_texts} "
                                "per request")
        column = entry.recipe.data.text_pair_column
        if column and body.text_pairs is None:
            raise ApiError(400, f"text_pairs: model '{entry.name}' was trained on text pairs "
                                f"(data.text_pair_column: {column}); send the second text of each pair, "
                                "one per text")
        if not column and body.text_pairs is not None:
            raise ApiError(400, f"text_pairs: model '{entry.name}' was not trained on text pairs; "
                                "send texts only")
        for i, text in enumerate(body.texts):
            check_text(text, f"texts.{i}")
        if body.text_pairs is None:
            return body.texts
        if len(body.text_pairs) != len(body.texts):
            raise ApiError(400, f"text_pairs: {len(body.text_pairs)} second texts for {len(body.texts)} "
                                "texts; send one per text")
        for i, text in enumerate(body.text_pairs):
            check_text(text, f"text_pairs.{i}")
        return list(zip(body.texts, body.text_pairs, strict=True))

    async def image_inputs(entry: Served, body: PredictRequest) -> list:
        """The images, base64-decoded and read by Pillow (in a worker thread), checked."""
        if body.texts is not None or body.text_pairs is not None:
            field = "texts" if body.texts is not None else "text_pairs"
            raise ApiError(400, f"{field}: model '{entry.name}' is an image run; send images "
                                "(base64-encoded image files)")
        if body.images is None:
            raise ApiError(400, "images: Field required")
        if len(body.images) > settings.max_images:
            raise ApiError(413, f"images: {len(body.images)} images; the limit is {settings.max_images} "
                                "per request")
        files = [_image_bytes(text, f"images.{i}", settings.max_image_bytes)
                 for i, text in enumerate(body.images)]
        return await run_in_threadpool(_decode_all, files, settings.max_image_pixels)

    def generation_args(entry: Served, body, ids: list[int]) -> dict:
        if len(ids) > settings.max_prompt_tokens:
            raise ApiError(400, f"the prompt is {len(ids)} tokens; the limit is {settings.max_prompt_tokens}")
        wanted = body.max_tokens or min(entry.recipe.generation.max_new_tokens, settings.max_new_tokens)
        if wanted > settings.max_new_tokens:
            raise ApiError(400, f"max_tokens: {wanted} asked; the limit is {settings.max_new_tokens}")
        return {"max_tokens": wanted, "temperature": body.temperature, "top_p": body.top_p, "seed": body.seed}

    async def respond(entry: Served, body, ids: list[int], chat: bool):
        """The OpenAI-style answer: a stream of server-sent events, or one completion."""
        args = generation_args(entry, body, ids)
        ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        kind = "chat.completion" if chat else "text_completion"
        created = int(time.time())
        if body.stream:
            async def events():
                finish: list[str] = []
                pieces = generation.stream(entry, ids, **args, max_time=settings.request_timeout,
                                           finish=finish)
                async for piece in iterate_in_threadpool(pieces):
                    yield _sse(ident, kind, created, entry.name, piece, None, chat)
                yield _sse(ident, kind, created, entry.name, "", finish[0] if finish else "stop", chat)
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        # batch key (temperature, top_p, seed, alone): greedy requests share batches, and sampled ones
        # with the same settings; a seeded sampled request runs alone, so its seed reproduces its answer
        if args["temperature"] == 0:
            key = (0.0, 1.0, None, None)
        else:
            alone = None if args["seed"] is None else uuid.uuid4().hex
            key = (args["temperature"], args["top_p"], args["seed"], alone)
        [(text, n, finish)] = await within(
            generations.submit(entry.name, [generation.Ask(ids, args["max_tokens"])], key), "the generation")
        choice = ({"index": 0, "message": {"role": "assistant", "content": text.strip()},
                   "finish_reason": finish}
                  if chat else {"index": 0, "text": text, "finish_reason": finish, "logprobs": None})
        return {"id": ident, "object": kind, "created": created, "model": entry.name, "choices": [choice],
                "usage": {"prompt_tokens": len(ids), "completion_tokens": n, "total_tokens": len(ids) + n}}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        entry = pick(request, body.model, generates=True)
        for i, m in enumerate(body.messages):
            if len(m.content) > settings.max_chars:
                raise ApiError(413, f"messages.{i}.content: {len(m.content)} characters; the limit is "
                                    f"{settings.max_chars}")
        ids = generation.chat_ids(entry, [m.model_dump() for m in body.messages])
        return await respond(entry, body, ids, chat=True)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        entry = pick(request, body.model, generates=True)
        check_text(body.prompt, "prompt")
        ids = generation.text_ids(entry, body.prompt)
        return await respond(entry, body, ids, chat=False)

    return app


def _sse(ident: str, kind: str, created: int, model: str, piece: str, finish: str | None, chat: bool) -> str:
    choice = ({"index": 0, "delta": {"content": piece} if piece else {}, "finish_reason": finish} if chat
              else {"index": 0, "text": piece, "finish_reason": finish, "logprobs": None})
    chunk = {"id": ident, "object": kind + (".chunk" if chat else ""), "created": created, "model": model,
             "choices": [choice]}
    return f"data: {json.dumps(chunk)}\n\n"


def _max_body(models: dict[str, Served], settings: ServeSettings) -> int:
    """The largest body a valid request can need, checked before the body is read: a client
    sending more gets a 413 instead of filling the server's memory. Texts: 4 bytes per character
    at worst, twice for pair runs; images: base64 (4 characters per 3 bytes); 64 KiB for the rest."""
    pairs = any(m.inputs == "pairs" for m in models.values())
    texts = 4 * settings.max_texts * settings.max_chars * (2 if pairs else 1)
    images = (settings.max_images * (4 * -(-settings.max_image_bytes // 3) + 64)
              if any(m.inputs == "images" for m in models.values()) else 0)
    return max(texts, images) + 65_536


def _image_bytes(text: str, where: str, limit: int) -> bytes:
    """One image's file bytes from base64 (a `data:image/...;base64,` prefix and line breaks are
    allowed)."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    text = "".join(text.split())
    if len(text) > 4 * -(-limit // 3) + 4:
        raise ApiError(413, f"{where}: about {len(text) * 3 // 4} bytes; the limit is {limit} bytes per "
                            "image")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ApiError(400, f"{where}: not valid base64 ({err})") from None
    if len(data) > limit:
        raise ApiError(413, f"{where}: {len(data)} bytes; the limit is {limit} bytes per image")
    return data


def _decode_all(files: list[bytes], max_pixels: int) -> list:
    images = []
    for i, data in enumerate(files):
        try:
            images.append(decode_image(data, max_pixels))
        except ImageTooLarge as err:
            raise ApiError(413, f"images.{i}: {err}") from None
        except BadImage as err:
            raise ApiError(400, f"images.{i}: {err}") from None
    return images
