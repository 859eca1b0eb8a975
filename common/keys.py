"""Which API key goes to which endpoint: the one rule every client in mcpgym follows.

A key is read from the variable the caller names (`--api-key-env`, `--judge-api-key-env`, ...)
and goes only to the endpoint it was named for:

- the named variable, when set, is the key;
- when it is unset, `OPENAI_API_KEY` stands in only for OpenAI's own API (`api.openai.com`): a
  judge or a server on a LAN never sees the user's OpenAI key by accident;
- otherwise no key (the caller sends none, or the placeholder an OpenAI client needs).

A key that would travel over plain `http://` to a host other than this machine is sent, with one
warning line on stderr per endpoint (not per request): anyone on the path can read it.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import threading
from urllib.parse import urlsplit

OPENAI_KEY_ENV = "OPENAI_API_KEY"
OPENAI_HOSTS = frozenset({"api.openai.com"})
# What an OpenAI client is given when no key goes to the endpoint (it refuses an empty key).
NO_KEY = "EMPTY"

_warned: set[tuple[str, str, int | None]] = set()
_warned_lock = threading.Lock()


def url_host(url: str) -> str:
    """The lower-case host of `url` ("" when it has none)."""
    return (urlsplit(url.strip()).hostname or "").lower()


def is_openai(url: str | None) -> bool:
    """Whether `url` is OpenAI's own API."""
    return url is not None and url_host(url) in OPENAI_HOSTS


def is_this_machine(host: str) -> bool:
    """Loopback (`localhost`, 127.0.0.0/8, ::1) or the unspecified address (0.0.0.0, ::), which
    a client connecting to it reaches on this machine too."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def key_for(url: str | None, env_var: str, *, environ: dict[str, str] | None = None) -> str | None:
    """The key to send to `url` from the variable `env_var` names, or None for no key.

    `url` None means the endpoint is the SDK's or provider's own choice (a hosted judge routed by
    litellm): then only the named variable counts, and the SDK reads its provider's own variable
    when it is unset."""
    env = os.environ if environ is None else environ
    key = env.get(env_var) or None
    if key is None and env_var != OPENAI_KEY_ENV and is_openai(url):
        key = env.get(OPENAI_KEY_ENV) or None
    if key is not None and url is not None:
        warn_if_plain_http(url, env_var)
    return key


def warn_if_plain_http(url: str, env_var: str) -> None:
    """One stderr line, once per endpoint, when a key goes over plain http off this machine."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if parts.scheme.lower() != "http" or not host or is_this_machine(host):
        return
    try:
        port = parts.port
    except ValueError:
        port = None
    endpoint = (parts.scheme.lower(), host, port)
    with _warned_lock:
        if endpoint in _warned:
            return
        _warned.add(endpoint)
    where = f"http://{host}" + (f":{port}" if port else "")
    print(
        f"warning: the key in ${env_var} is sent to {where} over plain http (readable on the network); "
        "use https or a loopback address",
        file=sys.stderr,
        flush=True,
    )
