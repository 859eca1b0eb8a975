#!/usr/bin/env bash
# System packages mcpgym uses outside Python: bubblewrap (`bwrap`), which runs a server under an env's
# `"sandbox"` setting (envs/sandbox.py). Installed with apt-get when missing and this is root; otherwise
# one line says how. Never fails the caller: an env that needs the sandbox reports its absence itself.
set -uo pipefail
if command -v bwrap >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing bubblewrap (for mcpgym's sandbox setting)"
  if ! apt-get install -y -qq bubblewrap >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq bubblewrap >/dev/null 2>&1 \
      || echo "warning: could not install bubblewrap; envs with a \"sandbox\" setting will not start" >&2
  fi
else
  echo "note: bubblewrap (bwrap) is missing; envs with a \"sandbox\" setting need it: sudo apt-get install bubblewrap" >&2
fi
exit 0
