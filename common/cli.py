"""What every mcpgym CLI shares: bad input is one clear line and exit code 2.

`ArgumentParser` prints `prog: error: ...` alone (no usage block) and exits 2.
`run_cli(main)` turns a `UsageError` (or any error type listed) raised from the
program into that same one line, never a traceback; Ctrl-C exits 130 quietly.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

from .redact import redact_text


class UsageError(Exception):
    """Bad input from the user: a missing file, a bad flag value, an empty dataset.

    Lower layers subclass it for their own bad-input errors (`contracts.EnvConfigError`), so this
    module needs none of them."""


# Errors that mean "the user's input is wrong", reported as one line with exit 2.
USER_ERRORS: tuple[type[BaseException], ...] = (UsageError, FileNotFoundError)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except where there is none to show: a None default (the help
    says what happens instead) or a help text that already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or "default:" in text:
            return text
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        parsed, rest = super().parse_known_args(args, namespace)
        missing = [
            action.option_strings[0]
            for action in self._actions
            if getattr(action, "required_flag", False) and getattr(parsed, action.dest, None) is None
        ]
        if missing:
            self.error(f"the following arguments are required: {', '.join(missing)}")
        return parsed, rest

    def error(self, message: str) -> NoReturn:
        fail(f"{self.prog}: error: {message} (see --help)")


def fail(message: str, code: int = 2) -> NoReturn:
    print(message.splitlines()[0] if message else "error", file=sys.stderr)
    raise SystemExit(code)


def run_cli(
    main: Callable[[], Any] | Callable[[], Coroutine[Any, Any, Any]],
    *,
    user_errors: tuple[type[BaseException], ...] = (),
) -> None:
    """Run a CLI entry (sync or async) with mcpgym's error conventions."""
    errors = USER_ERRORS + user_errors
    try:
        result = asyncio.run(main()) if inspect.iscoroutinefunction(main) else main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except errors as exc:
        name = getattr(exc, "filename", None)
        text = f"no such file: {name}" if isinstance(exc, FileNotFoundError) and name else str(exc)
        fail(f"error: {text}")
    if isinstance(result, int):
        raise SystemExit(result)


def infra_exit_code(*, what: str, total: int, failed: int, endpoint: str, error: str | None = None) -> int:
    """The exit-code rule of every CLI that calls an endpoint (a policy server, a judge):

    - all `total` pieces of work of this run failed on infrastructure: one `error:` line naming the
      endpoint and the first error, exit 1 (nothing useful was produced: a script must not go on);
    - some failed: one `warning:` line with the counts, exit 0 (what was produced is good, and a
      rerun resumes and retries just the failures);
    - none failed, or there was nothing to do: exit 0, silently.

    `what` names the work in the plural ("rollouts", "trajectories", "entries"). The endpoint and
    the error are redacted (`common.redact`): a base URL may carry a key in its query or path."""
    endpoint = redact_text(endpoint)
    detail = f": {redact_text(error)}" if error else ""
    if total and failed >= total:
        print(f"error: all {total} {what} failed on infrastructure at {endpoint}{detail}", file=sys.stderr)
        return 1
    if failed:
        print(
            f"warning: {failed} of {total} {what} failed on infrastructure at {endpoint} (rerun to retry them){detail}",
            file=sys.stderr,
        )
    return 0
