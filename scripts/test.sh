#!/usr/bin/env bash
# The README's test command: set up the environment (idempotent) and run the tests.
# Extra arguments go to pytest, e.g. `scripts/test.sh -k diou -x`.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$REPO/scripts/bootstrap.sh"
VENV="${DETLOSS_VENV:-$REPO/.venv}"
cd "$REPO"
exec "$VENV/bin/python" -m pytest "$@"
