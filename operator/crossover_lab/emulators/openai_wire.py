"""OpenAI wire format shared by the emulators: request parsing, token counting, responses and SSE chunks.

Token counting is a documented rule, not a tokenizer: a prompt of `c` characters (all message contents, or the
prompt string) counts as max(1, ceil(c / 4)) tokens; generated text is one placeholder word per token. Clients that
need an exact prompt size send 4 characters per token.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

CHARS_PER_TOKEN = 4
WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")


class BadRequest(Exception):
    """An OpenAI-style 400."""


@dataclass(frozen=True)
class Completion:
    """One parsed request: which endpoint, how many tokens in and out, and how to answer."""

    chat: bool
    model: str
    prompt_tokens: int
    max_tokens: int
    stream: bool
    include_usage: bool
    prompt: str = ""  # the prompt's text, for a prefix cache
    cached_tokens: int = 0  # what the serving side's prefix cache already held (reported in usage)


def count_prompt_tokens(body: dict[str, Any], chat: bool) -> int:
    return max(1, math.ceil(len(prompt_text(body, chat)) / CHARS_PER_TOKEN))


def prompt_text(body: dict[str, Any], chat: bool) -> str:
    """The prompt's text, messages joined in order (what a prefix cache compares)."""
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty list")
        parts: list[str] = []
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):  # content parts
                parts += [str(part.get("text", "")) for part in content if isinstance(part, dict)]
        return "".join(parts)
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = "".join(str(p) for p in prompt)
    if not isinstance(prompt, str):
        raise BadRequest("'prompt' must be a string")
    return prompt


class PromptCache:
    """A hosted API's automatic prompt caching, as OpenAI documents it: prompts of 1,024 tokens or more are cached,
    and a later prompt with an identical prefix reports the cached part (in 128-token steps from 1,024) as
    `usage.prompt_tokens_details.cached_tokens`. Prefixes are remembered by hash, the oldest forgotten first."""

    MINIMUM, STEP = 1024, 128

    def __init__(self, capacity: int = 100_000) -> None:
        self._seen: dict[int, None] = {}
        self._capacity = capacity

    def cached_tokens(self, text: str) -> int:
        """Tokens of `text` served from the cache, then remember its prefixes for the next prompt."""
        tokens = len(text) // CHARS_PER_TOKEN
        steps = range(self.MINIMUM, tokens + 1, self.STEP)
        keys = [(step, hash(text[: step * CHARS_PER_TOKEN])) for step in steps]
        cached = max((step for step, key in keys if key in self._seen), default=0)
        for _, key in keys:
            self._seen.pop(key, None)
            self._seen[key] = None
        while len(self._seen) > self._capacity:
            del self._seen[next(iter(self._seen))]
        return cached


async def parse(request: web.Request, chat: bool, default_max_tokens: int) -> Completion:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadRequest(f"request body is not JSON: {error}") from error
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens", default_max_tokens))
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise BadRequest("'max_tokens' must be a positive integer")
    options = body.get("stream_options") or {}
    return Completion(
        chat=chat,
        model=str(body.get("model") or ""),
        prompt_tokens=count_prompt_tokens(body, chat),
        prompt=prompt_text(body, chat),
        max_tokens=max_tokens,
        stream=bool(body.get("stream", False)),
        include_usage=bool(options.get("include_usage", False)) if isinstance(options, dict) else False,
    )


def error_response(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "code": status}}
    return web.json_response(body, status=status, headers=headers)


def text_of(start: int, count: int) -> str:
    return "".join(f"{WORDS[(start + i) % len(WORDS)]} " for i in range(count))


def usage(prompt: int, completion: int, cached: int = 0) -> dict[str, Any]:
    counts: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached:
        counts["prompt_tokens_details"] = {"cached_tokens": cached}
    return counts


class Reply:
    """Builds the JSON body or the SSE chunks of one completion."""

    def __init__(self, completion: Completion, model: str) -> None:
        self.completion = completion
        self.model = model
        self.id = ("chatcmpl-" if completion.chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.object = "chat.completion" if completion.chat else "text_completion"

    def body(self, generated: int) -> dict[str, Any]:
        text = text_of(0, generated)
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length", "logprobs": None}
        if self.completion.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": usage(self.completion.prompt_tokens, generated, self.completion.cached_tokens),
        }

    def chunk(self, start: int, count: int, finish: bool) -> bytes:
        text = text_of(start, count)
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length" if finish else None, "logprobs": None}
        if self.completion.chat:
            choice["delta"] = {"role": "assistant", "content": text} if start == 0 else {"content": text}
        else:
            choice["text"] = text
        payload: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.completion.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }
        if self.completion.include_usage:
            payload["usage"] = None
        return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

    def usage_chunk(self, generated: int) -> bytes:
        payload: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.completion.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage(self.completion.prompt_tokens, generated, self.completion.cached_tokens),
        }
        return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


async def start_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    return response


def models_body(models: list[str], owner: str) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": 0, "owned_by": owner} for m in models],
    }
