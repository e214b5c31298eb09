"""OpenAI-compatible endpoints of ``tailor serve`` for a generation model, so existing clients and SDKs work.

``POST /v1/chat/completions`` (``messages`` formatted as the run trained: the tokenizer's chat template, or the
plain template), ``POST /v1/completions`` (``prompt`` continued as raw text), ``GET /v1/models``. Honoured:
``max_tokens``, ``temperature`` (0: greedy), ``top_p``, ``stop`` (a string or up to 4), ``stream: true`` (server-sent
events, ``data: [DONE]`` at the end); ``n`` must be 1. Errors have OpenAI's shape
(``{"error": {"message", "type", "param", "code"}}``). Generation runs in the model's one worker thread as a job
(serve/batching.py), so it never overlaps a /predict pass.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from tailorlm.models.saved import LoadedModel
from tailorlm.serve.batching import Batcher, QueueFull

#: the most tokens one completion may ask for
MAX_TOKENS_LIMIT = 2048
_ROLES = ("system", "user", "assistant")


class OpenAIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind

    def reply(self) -> Any:
        from tailorlm.serve.replies import json_reply

        return json_reply(self.status, {"error": {"message": self.message, "type": self.kind, "param": self.param,
                                                  "code": None}})


@dataclass
class Sampling:
    max_tokens: int
    temperature: float
    top_p: float
    stop: list[str]
    stream: bool


def model_id(loaded: LoadedModel) -> str:
    folder = loaded.path
    return folder.parent.name if folder.name == "model" else folder.name


def _number(body: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise OpenAIError(400, f"'{key}' must be a number from {low:g} to {high:g}, not {value!r}", key)
    return float(value)


def sampling_of(body: dict[str, Any], default_tokens: int) -> Sampling:
    """The decoding options of a request, each checked with a one-line error naming it."""
    tokens = body.get("max_tokens", body.get("max_completion_tokens")) or default_tokens
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not 1 <= tokens <= MAX_TOKENS_LIMIT:
        raise OpenAIError(400, f"'max_tokens' must be an integer from 1 to {MAX_TOKENS_LIMIT}, not {tokens!r}",
                          "max_tokens")
    if body.get("n", 1) not in (1, None):
        raise OpenAIError(400, "'n' must be 1: this server returns one choice per request", "n")
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
        raise OpenAIError(400, "'stop' must be a string or a list of up to 4 non-empty strings", "stop")
    return Sampling(int(tokens), _number(body, "temperature", 1.0, 0.0, 2.0), _number(body, "top_p", 1.0, 0.0, 1.0),
                    stop, bool(body.get("stream", False)))


def chat_ids(loaded: LoadedModel, messages: Any) -> list[int]:
    """The prompt's token ids: the conversation in the run's training format, ready for the assistant's turn."""
    from tailorlm.tasks.generation.task import Example, prompt_ids, uses_chat_template

    if not isinstance(messages, list) or not messages:
        raise OpenAIError(400, "'messages' must be a non-empty list of {\"role\": ..., \"content\": ...}",
                          "messages")
    turns = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES \
                or not isinstance(message.get("content"), str):
            raise OpenAIError(400, f"messages[{i}] must be {{\"role\": one of {', '.join(_ROLES)}, \"content\": "
                                   "a string}", "messages")
        turns.append({"role": message["role"], "content": message["content"]})
    tokenizer, meta = loaded.tokenizer, loaded.meta
    chat = meta.get("prompt_format", "chat" if uses_chat_template(tokenizer) else "plain") == "chat"
    example = Example(turns[-1]["content"], "", json.dumps(turns), "chat")
    return prompt_ids(tokenizer, example, chat)


def completion_ids(loaded: LoadedModel, prompt: Any) -> list[int]:
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise OpenAIError(400, "'prompt' must be a non-empty string", "prompt")
    return list(loaded.tokenizer(prompt, add_special_tokens=True)["input_ids"])


def _cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    cuts = [text.index(s) for s in stop if s in text]
    return (text[:min(cuts)], True) if cuts else (text, False)


def generate(loaded: LoadedModel, ids: list[int], sampling: Sampling,
             on_text: Callable[[str], None] | None = None) -> dict[str, Any]:
    """One completion of ``ids`` (in the model's thread): text, token counts and OpenAI's finish reason."""
    import torch
    from transformers import TextStreamer

    model, tokenizer = loaded.model, loaded.tokenizer
    streamer = None
    if on_text is not None:
        class Streamer(TextStreamer):
            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                if text:
                    on_text(text)

        streamer = Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    inputs = torch.tensor([ids], device=next(model.parameters()).device)
    sample = sampling.temperature > 0
    options: dict[str, Any] = {"max_new_tokens": sampling.max_tokens, "do_sample": sample,
                               "eos_token_id": tokenizer.eos_token_id, "streamer": streamer,
                               "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                               else tokenizer.eos_token_id}
    options |= ({"temperature": sampling.temperature, "top_p": sampling.top_p} if sample
                else {"temperature": None, "top_p": None, "top_k": None})
    with torch.inference_mode():
        output = model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), **options)
    new = output[0, len(ids):].tolist()
    text, stopped = _cut_at_stop(tokenizer.decode(new, skip_special_tokens=True), sampling.stop)
    ended = bool(new) and new[-1] == tokenizer.eos_token_id
    finish = "stop" if stopped or ended or len(new) < sampling.max_tokens else "length"
    return {"text": text, "prompt_tokens": len(ids), "completion_tokens": len(new), "finish_reason": finish}


def _usage(result: dict[str, Any]) -> dict[str, int]:
    return {"prompt_tokens": result["prompt_tokens"], "completion_tokens": result["completion_tokens"],
            "total_tokens": result["prompt_tokens"] + result["completion_tokens"]}


class Completions:
    """The handler of one endpoint: ``chat`` for /v1/chat/completions, else /v1/completions."""

    def __init__(self, loaded: LoadedModel, batcher: Batcher, settings: Any, chat: bool) -> None:
        self.loaded, self.batcher, self.settings, self.chat = loaded, batcher, settings, chat
        self.default_tokens = int(loaded.meta.get("generation", {}).get("max_new_tokens") or 64)

    async def __call__(self, request: Request) -> Any:
        from tailorlm.serve.replies import RequestError, parse_json, read_body

        try:
            try:
                body = parse_json(await read_body(request, self.settings))
            except RequestError as exc:
                raise OpenAIError(exc.status, exc.message) from None
            if not isinstance(body, dict):
                raise OpenAIError(400, "the body must be a JSON object")
            sampling = sampling_of(body, self.default_tokens)
            ids = chat_ids(self.loaded, body.get("messages")) if self.chat \
                else completion_ids(self.loaded, body.get("prompt"))
            request.state.inputs = 1
            if sampling.stream:
                return self._stream(ids, sampling)
            result = await self._submit(lambda: generate(self.loaded, ids, sampling))
            return self._reply(result)
        except OpenAIError as exc:
            return exc.reply()
        except Exception:  # a bug: logged here, the client gets one line
            import logging

            logging.getLogger("tailorlm.serve").exception("%s failed", request.url.path)
            return OpenAIError(500, "internal error; the server log has the details", kind="server_error").reply()

    async def _submit(self, job: Callable[[], Any]) -> Any:
        try:
            future = self.batcher.submit_job(job)
        except QueueFull:
            raise OpenAIError(503, "the model is busy and its queue is full (--max-queue); retry later",
                              kind="server_error") from None
        return await future

    def _reply(self, result: dict[str, Any]) -> Any:
        from tailorlm.serve.replies import json_reply

        base = {"id": f"{'chatcmpl' if self.chat else 'cmpl'}-{uuid.uuid4().hex[:24]}", "created": int(time.time()),
                "model": model_id(self.loaded), "usage": _usage(result)}
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": result["text"]},
                      "finish_reason": result["finish_reason"], "logprobs": None}
            return json_reply(200, base | {"object": "chat.completion", "choices": [choice]})
        choice = {"index": 0, "text": result["text"], "finish_reason": result["finish_reason"], "logprobs": None}
        return json_reply(200, base | {"object": "text_completion", "choices": [choice]})

    def _chunk(self, ident: str, piece: str | None, finish: str | None, first: bool = False) -> str:
        if self.chat:
            delta: dict[str, Any] = ({"role": "assistant", "content": ""} if first else
                                     {"content": piece} if piece is not None else {})
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            kind = "chat.completion.chunk"
        else:
            choice, kind = {"index": 0, "text": piece or "", "finish_reason": finish, "logprobs": None}, \
                "text_completion"
        chunk = {"id": ident, "object": kind, "created": int(time.time()), "model": model_id(self.loaded),
                 "choices": [choice]}
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    def _stream(self, ids: list[int], sampling: Sampling) -> Any:
        from starlette.responses import StreamingResponse

        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()

        def job() -> dict[str, Any]:
            try:
                return generate(self.loaded, ids, sampling, lambda t: loop.call_soon_threadsafe(pieces.put_nowait, t))
            finally:
                loop.call_soon_threadsafe(pieces.put_nowait, None)

        try:
            future = self.batcher.submit_job(job)
        except QueueFull:
            raise OpenAIError(503, "the model is busy and its queue is full (--max-queue); retry later",
                              kind="server_error") from None
        return StreamingResponse(self._events(future, pieces, sampling.stop), media_type="text/event-stream")

    async def _events(self, future: asyncio.Future[Any], pieces: asyncio.Queue[str | None],
                      stop: list[str]) -> AsyncIterator[str]:
        ident = f"{'chatcmpl' if self.chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        if self.chat:
            yield self._chunk(ident, None, None, first=True)
        sent, stopped = "", False
        while (piece := await pieces.get()) is not None:
            if stopped:
                continue
            text, stopped = _cut_at_stop(sent + piece, stop)
            if len(text) > len(sent):
                yield self._chunk(ident, text[len(sent):], None)
                sent = text
        try:
            result = await future
            finish = "stop" if stopped else result["finish_reason"]
        except Exception:  # logged by the server; the stream ends with an error event, no detail
            import logging

            logging.getLogger("tailorlm.serve").exception("streamed completion failed")
            yield 'data: {"error": {"message": "internal error", "type": "server_error"}}\n\n'
            return
        yield self._chunk(ident, None, finish)
        yield "data: [DONE]\n\n"


def add_openai_routes(app: Any, loaded: LoadedModel, batcher: Batcher, settings: Any) -> None:
    """Add /v1/models, /v1/chat/completions and /v1/completions for ``loaded`` (a generation model)."""
    from tailorlm.serve.replies import json_reply

    async def models() -> Any:
        return json_reply(200, {"object": "list", "data": [
            {"id": model_id(loaded), "object": "model", "created": 0, "owned_by": "tailorlm"}]})

    app.add_api_route("/v1/models", models, methods=["GET"], summary="OpenAI: the model served")
    app.add_api_route("/v1/chat/completions", Completions(loaded, batcher, settings, chat=True), methods=["POST"],
                      summary="OpenAI: chat completion (stream: true for server-sent events)")
    app.add_api_route("/v1/completions", Completions(loaded, batcher, settings, chat=False), methods=["POST"],
                      summary="OpenAI: text completion")
