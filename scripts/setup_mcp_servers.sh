#!/usr/bin/env bash
# The third-party npm MCP servers the tests run for real (tests/test_envs_disk_isolation.py), pinned,
# into .mcp-servers/ (git-ignored). A re-run with them present returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."
MEMORY=@modelcontextprotocol/server-memory@2026.8.31
FILESYSTEM=@modelcontextprotocol/server-filesystem@2026.8.31
want="$MEMORY $FILESYSTEM"
stamp=.mcp-servers/.mcpgym-setup
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "error: npm is needed to install the test MCP servers ($want)" >&2
  exit 2
fi
echo "installing $want into .mcp-servers/"
npm install --prefix .mcp-servers --no-audit --no-fund --silent "$MEMORY" "$FILESYSTEM"
echo "$want" > "$stamp"
