"""OpenAI's wire format as the router speaks it: error bodies, provider errors made safe, Retry-After, usage.

Every error the router sends, its own or a provider's, is OpenAI's shape (`{"error": {"message", "type", "param",
"code"}}`, `code` a string or null) with a JSON content type, so the official SDKs raise their typed errors
instead of failing to decode. Provider bodies are passed on (message, type, param, code) with the API key
redacted; nothing else from them is trusted.
"""

from __future__ import annotations

import email.utils
import math
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

JSON = "application/json"
REDACTED = "[redacted]"
# Provider headers worth passing on: the request id (for support tickets) and the rate-limit budget.
PASSED_HEADERS = ("x-request-id", "openai-processing-ms", "retry-after", "retry-after-ms")
PASSED_PREFIXES = ("x-ratelimit-",)
MAX_ERROR_BODY = 64 * 1024  # bytes of a provider's error body read; the rest is not needed to explain it
MAX_MESSAGE = 2_000  # characters of a provider's message passed on

# OpenAI's error types and codes, by the status the router answers itself.
TYPES = {
    400: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "server_error",
    504: "server_error",
}


def error_body(status: int, message: str, code: str | None, param: str | None = None, kind: str | None = None) -> bytes:
    kind = kind or TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})


def error_response(
    status: int,
    message: str,
    code: str | None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.Response(
        status=status, body=error_body(status, message, code, param), content_type=JSON, headers=headers
    )


def error_event(message: str, code: str | None) -> bytes:
    """A mid-stream failure as the last SSE event: the shape OpenAI's SDKs raise from (`APIError`)."""
    return b"data: " + error_body(502, message, code) + b"\n\n"


def redact(text: str, secret: str | None) -> str:
    return text.replace(secret, REDACTED) if secret else text


def _string(value: Any) -> str | None:
    return None if value is None else str(value)


def provider_error(status: int, data: bytes, secret: str | None) -> bytes:
    """A provider's error body in OpenAI's shape, key redacted; a body that is not OpenAI's becomes the message."""
    error: Any = None
    try:
        parsed = orjson.loads(data)
        error = parsed.get("error") if isinstance(parsed, dict) else None
    except orjson.JSONDecodeError:
        pass
    if isinstance(error, dict):
        message = redact(str(error.get("message") or f"upstream answered HTTP {status}"), secret)[:MAX_MESSAGE]
        kind = redact(str(error.get("type") or TYPES.get(status, "upstream_error")), secret)
        param, code = _string(error.get("param")), _string(error.get("code"))
        param = None if param is None else redact(param, secret)
        code = None if code is None else redact(code, secret)
        return error_body(status, message, code, param, kind)
    text = data.decode("utf-8", "replace").strip()
    if isinstance(error, str) and error:
        text = error  # {"error": "..."}, as some servers answer
    message = redact(text, secret)[:MAX_MESSAGE] or f"upstream answered HTTP {status}"
    return error_body(status, message, None)


def passed_headers(headers: Any, secret: str | None) -> dict[str, str]:
    """Request id and rate-limit headers from a provider, key redacted (a header could echo it too)."""
    passed: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in PASSED_HEADERS or lower.startswith(PASSED_PREFIXES):
            passed[name] = redact(value, secret)
    return passed


def retry_after_seconds(value: str | None, ceiling: float, now: float | None = None, default: float = 1.0) -> float:
    """Seconds to back off from a Retry-After header (delay-seconds or HTTP-date), always in [1, ceiling].

    Absent, unparsable or NaN: `default`. Past dates, zero and negatives: 1 s (a 429 always backs off a little).
    Infinity, 1e12 and far dates: the ceiling (a provider cannot switch the API off for a month by accident).
    """
    seconds = default
    if value is not None:
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError, OverflowError):
                seconds = default
            else:  # RFC 9110 dates are GMT; a date without a zone is not one
                clock = time.time() if now is None else now
                seconds = default if when.tzinfo is None else when.timestamp() - clock
        if math.isnan(seconds):
            seconds = default
    return min(max(seconds, 1.0), max(ceiling, 1.0))


@dataclass
class Usage:
    """Tokens of one request: from the upstream's usage when it sent a valid one, else estimated (`estimated`)."""

    prompt: int = 0
    completion: int = 0
    cached: int = 0
    counted: bool = False  # a valid usage object was seen

    def read(self, payload: Any) -> bool:
        """Take `usage` from a parsed response or chunk; malformed usage (lists, strings, negatives) is ignored."""
        usage = payload.get("usage") if isinstance(payload, dict) else None
        if not isinstance(usage, dict):
            return False
        prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
        if prompt is None or completion is None:
            return False
        details = usage.get("prompt_tokens_details")
        cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else 0
        self.prompt, self.completion = prompt, completion
        self.cached = min(cached or 0, prompt)
        self.counted = True
        return True


def _count(value: Any) -> int | None:
    """A token count, or None: not an int (strings, floats, booleans), negative, or absurd."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53
    return value if ok else None


BYTES_PER_TOKEN = 4  # the estimate's rule: about four bytes of text per token (English, common tokenizers)


def estimate_tokens(size: int) -> int:
    """Tokens in `size` bytes of text by the documented rule (rounded up: an estimate that bills never undercounts
    what it measured)."""
    return (size + BYTES_PER_TOKEN - 1) // BYTES_PER_TOKEN
