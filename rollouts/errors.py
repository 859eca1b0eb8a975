"""Whose fault an error is, and whether trying again can help: one rule for the policy client,
the endpoint pool, the retries and the judges."""

from __future__ import annotations

import openai

TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying: connection trouble, timeouts, 429 and 5xx (the one rule of
    rollouts.retry). A 400/401/403/404 is not: the same request fails the same way again."""
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    # APIStatusError, and litellm's errors (its APIError and ServiceUnavailableError carry a
    # `status_code` without being APIStatusError).
    status = getattr(exc, "status_code", None)
    if isinstance(exc, openai.APIError) and isinstance(status, int):
        return status in TRANSIENT_STATUS or status >= 500
    return isinstance(exc, TimeoutError | ConnectionError)


def is_context_overflow(exc: BaseException) -> bool:
    """A 400 because the conversation outgrew the model's context: the model's doing, not infra."""
    if not isinstance(exc, openai.BadRequestError):
        return False
    text = str(exc).lower()
    return "context length" in text or "maximum context" in text or "too many tokens" in text


def describe_error(exc: BaseException) -> str:
    """One line naming the error, never its request (headers hold the key)."""
    if isinstance(exc, openai.APIStatusError):
        return f"{type(exc).__name__}: HTTP {exc.status_code}: {_first_line(exc.message)}"
    return f"{type(exc).__name__}: {_first_line(str(exc))}" if str(exc) else type(exc).__name__


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:limit]
