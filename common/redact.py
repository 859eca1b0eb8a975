"""What a URL, a command or an error's text may show once it is in a log, an error, a report or a
state file: the one redaction rule of mcpgym (server labels, `EnvInfraError` text, trajectories'
`error.message`, endpoint stats, bench reports, eval summaries, GRPO's `state.json`, exit lines).

- `redact_url`: scheme, host and port stay (a refused connection must say where it went);
  `user:password@` is dropped, a query becomes `?...` and a fragment `#...`, and each path segment
  is shown only when it cannot be a secret (`segment_shown`), else it becomes `***`.
- `redact_argv` / `redact_command`: each word stays, except the value of a secret-named flag
  (`--api-key X`, `--token=X`), the value of an environment assignment (`OPENAI_API_KEY=...`, any
  `UPPER_CASE=value`, or `token=value`), and a word that looks like a key (`looks_secret`), which
  become `***`; URLs inside are redacted as above.
- `redact_text`: the same, word by word, for free text (an error's message).

A variable reference (`${NAME}`, `${env:NAME}`, `$NAME`) is always shown: it is how a config names
where a secret comes from, never the secret.

A path segment is shown when it is one of `SAFE_SEGMENTS` (`mcp`, `sse`, `v1`, ...), a variable
reference, or at most 32 characters of letters, digits and `._~-` that do not look like a secret.

`looks_secret(word)`, deterministic and without context:

- a known key prefix (`sk-`, `ghp_`, `xoxb-`, `hf_`, `AKIA`, `eyJ`, ...) followed by 8 or more
  characters holding a digit, or by 20 or more;
- a UUID;
- a run of 10 or more letters and digits that is random-looking: cut into words the way a name
  is (`Env|Infra|Error`, `gpt|4|omini|2024`, `Hugging|Face|TB`), its words average fewer than 2.5
  characters (`AbC9xYz12QwE` cuts into `Ab|C|9|x|Yz|12|Qw|E`); or it is hex with both letters and
  digits and 12 or more long; or it is 40 or more long.

The rule is deliberately eager: a masked model name costs a reader a moment; a shown key costs
the key. Every function here is idempotent (redacting redacted text changes nothing) and never
raises.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from urllib.parse import urlsplit

__all__ = [
    "MASK",
    "SAFE_SEGMENTS",
    "looks_secret",
    "redact_argv",
    "redact_command",
    "redact_text",
    "redact_url",
    "segment_shown",
    "url_secrets",
]

MASK = "***"

# Path segments of the endpoints mcpgym talks to (MCP, OpenAI-compatible servers, vLLM, health
# checks): shown whatever the general rule says.
SAFE_SEGMENTS = frozenset(
    {
        "mcp",
        "sse",
        "messages",
        "message",
        "health",
        "v1",
        "v2",
        "v3",
        "api",
        "openai",
        "chat",
        "completions",
        "models",
        "events",
        "stream",
        "rpc",
        "jsonrpc",
        "metrics",
    }
)
_SEGMENT_MAX = 32
_SEGMENT_CHARS = re.compile(r"[A-Za-z0-9._~-]+")
_VARIABLE = re.compile(r"\$\{[^{}\s]+\}|\$[A-Za-z_][A-Za-z0-9_]*")
_KEY_PREFIXES = (
    "sk-",
    "sk_",
    "pk_",
    "rk_",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "xoxa-",
    "xoxb-",
    "xoxp-",
    "xoxr-",
    "xoxs-",
    "hf_",
    "gsk_",
    "npm_",
    "pypi-",
    "AKIA",
    "ASIA",
    "AIza",
    "eyJ",
    "ya29.",
)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_RUN = re.compile(r"[A-Za-z0-9]{10,}")
_HEX = re.compile(r"[0-9a-f]+|[0-9A-F]+")
_NAME_WORD = re.compile(r"[A-Z][a-z]+|[a-z]+|[A-Z]+|[0-9]+")
# A word of free text or of a command: what `looks_secret` is asked about.
_WORD = re.compile(r"[A-Za-z0-9_+.-]+")
# Names whose value is a secret: `--api-key`, `--github-token`, `OPENAI_API_KEY`, `password`
# (a whole part between separators: `--tokenizer`, `--max-tokens`, `keyboard` are not).
_SECRET_NAME = re.compile(
    r"(?:^|[-_.])(?:api[-_]?key|apikey|key|keys|token|secret|secrets|password|passwd|pwd|pass|auth|"
    r"authorization|credential|credentials|bearer|cookie|signature|sig|private[-_]?key|access[-_]?key)(?:$|[-_.])",
    re.IGNORECASE,
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,30}://")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,30}://[^\s'\"<>`]+")
_VALUE_IN_TEXT = r"""('[^'\s]*'|"[^"\s]*"|[^\s,;)\]}'"]+)"""
_FLAG_IN_TEXT = re.compile(r"(?<![\w-])(--?[A-Za-z][A-Za-z0-9_-]*)(=|[ \t]+)" + _VALUE_IN_TEXT)
_ASSIGNMENT_IN_TEXT = re.compile(r"(?<![\w$.-])([A-Za-z_][A-Za-z0-9_]*)=" + _VALUE_IN_TEXT)
_BEARER_IN_TEXT = re.compile(r"(?i)\b(bearer)(\s+)([A-Za-z0-9._~+/=-]{4,})")


def _is_variable(value: str) -> bool:
    return bool(_VARIABLE.fullmatch(value.strip("'\"")))


def _shown_as_is(value: str) -> bool:
    """A value that needs no masking: a variable reference, or already masked."""
    return _is_variable(value) or value.strip("'\"") == MASK


def _random_run(run: str) -> bool:
    if len(run) >= 40:
        return True
    if len(run) >= 12 and _HEX.fullmatch(run) and any(c.isdigit() for c in run) and any(c.isalpha() for c in run):
        return True
    return len(_NAME_WORD.findall(run)) * 2.5 > len(run)


def looks_secret(word: str) -> bool:
    """Whether `word` (no spaces) looks like a key, a token or a password (the module's rule)."""
    for prefix in _KEY_PREFIXES:
        if word.startswith(prefix):
            rest = word[len(prefix) :]
            if len(rest) >= 20 or (len(rest) >= 8 and any(c.isdigit() for c in rest)):
                return True
    if _UUID.search(word):
        return True
    return any(_random_run(match.group()) for match in _RUN.finditer(word))


def segment_shown(segment: str) -> bool:
    """Whether a URL path segment may be shown as it is (the module's rule)."""
    if not segment or segment.lower() in SAFE_SEGMENTS or _is_variable(segment):
        return True
    return len(segment) <= _SEGMENT_MAX and bool(_SEGMENT_CHARS.fullmatch(segment)) and not looks_secret(segment)


def redact_url(url: str) -> str:
    """`url` as a record may show it: host and port, the safe path segments, no userinfo, no query.

    A comma-separated list of URLs (`--base-url URL,URL`) is redacted URL by URL; text that is not
    a URL is redacted as free text."""
    text = str(url).strip()
    parts_in = text.split(",")
    if len(parts_in) > 1 and all(_SCHEME.match(part.strip()) for part in parts_in):
        return ",".join(redact_url(part) for part in parts_in)
    if not _SCHEME.match(text):
        return redact_text(text)
    try:
        parts = urlsplit(text)
    except ValueError:  # a malformed netloc ("http://[abc"): nothing of it is worth the risk
        return f"{text.partition('://')[0]}://{MASK}"
    host = parts.netloc.rpartition("@")[2]
    path = "/".join(segment if segment_shown(segment) else MASK for segment in parts.path.split("/"))
    tail = ("?..." if parts.query else "") + ("#..." if parts.fragment else "")
    return f"{parts.scheme}://{host}{path}{tail}"


def url_secrets(url: str) -> list[str]:
    """The pieces of `url` that `redact_url` hides (userinfo, query, fragment, path segments), for
    cutting them out of text that quotes the URL some other way (an HTTP client's error)."""
    if not _SCHEME.match(str(url).strip()):
        return []
    try:
        parts = urlsplit(str(url).strip())
    except ValueError:
        return [str(url)]
    found = [parts.netloc.rpartition("@")[0], parts.password or "", parts.query, parts.fragment]
    found += [segment for segment in parts.path.split("/") if not segment_shown(segment)]
    found += [value for _, _, value in (pair.partition("=") for pair in parts.query.split("&"))]
    return [piece for piece in dict.fromkeys(found) if piece and piece != "..."]


def _url_in_text(match: re.Match[str]) -> str:
    found = match.group()
    # Punctuation that ends a sentence or closes a bracket is not part of the URL; a query's own
    # trailing characters go with it (it is cut whole).
    strip = ",;:)]}" if ("?" in found or "#" in found) else ",;:.!)]}"
    core = found.rstrip(strip)
    return redact_url(core) + found[len(core) :]


def _flag_in_text(match: re.Match[str]) -> str:
    flag, sep, value = match.groups()
    if not _SECRET_NAME.search(flag.lstrip("-")) or _shown_as_is(value) or value.startswith("-"):
        return match.group()
    return f"{flag}{sep}{MASK}"


def _assignment_in_text(match: re.Match[str]) -> str:
    name, value = match.groups()
    if not (name.isupper() or _SECRET_NAME.search(name)) or _shown_as_is(value):
        return match.group()
    return f"{name}={MASK}"


def _word_in_text(match: re.Match[str]) -> str:
    return MASK if looks_secret(match.group()) else match.group()


def redact_text(text: str) -> str:
    """Free text (an error's message, a log line) with its URLs, secret-named values
    (`--token X`, `API_KEY=...`, `Bearer ...`) and secret-looking words redacted."""
    text = _URL_IN_TEXT.sub(_url_in_text, str(text))
    text = _FLAG_IN_TEXT.sub(_flag_in_text, text)
    text = _ASSIGNMENT_IN_TEXT.sub(_assignment_in_text, text)
    text = _BEARER_IN_TEXT.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    return _WORD.sub(_word_in_text, text)


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command's words as a record may show them (the module's rule), one for one."""
    out: list[str] = []
    hide_next = False
    for raw in argv:
        item = str(raw)
        if hide_next and not item.startswith("-"):
            out.append(item if _shown_as_is(item) else MASK)
            hide_next = False
            continue
        hide_next = False
        name, eq, value = item.partition("=")
        if item.startswith("-") and _SECRET_NAME.search(name.lstrip("-")):
            if eq:
                out.append(f"{name}={value if _shown_as_is(value) else MASK}")
            else:
                out.append(item)
                hide_next = True
            continue
        if eq and value and _ENV_NAME.fullmatch(name) and (name.isupper() or _SECRET_NAME.search(name)):
            out.append(f"{name}={value if _shown_as_is(value) else MASK}")
            continue
        out.append(redact_text(item))
    return out


def redact_command(argv: Sequence[str]) -> str:
    """A command line for a record: `redact_argv`, shell-quoted."""
    return shlex.join(redact_argv(argv))
