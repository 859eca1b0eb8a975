#!/usr/bin/env bash
# The test command of the README: create or update .venv from the project's own
# files (scripts/setup_venv.sh), install bubblewrap (scripts/setup_system.sh) and the npm MCP servers
# the tests run (scripts/setup_mcp_servers.sh), make sure the embedded model is cached, run pytest.
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/test_energy.py -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
bash scripts/setup_system.sh
bash scripts/setup_mcp_servers.sh
# shellcheck disable=SC1091
source .venv/bin/activate
export LITELLM_LOCAL_MODEL_COST_MAP=True  # litellm (under ART) would fetch a price list from the internet
python -m train.models fetch
exec python -m pytest "$@"
