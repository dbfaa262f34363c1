#!/usr/bin/env bash
# Build the documentation site (Sphinx) into docs/_build/html, warnings as errors.
#
# Sets up the environment first (scripts/bootstrap.sh, idempotent), installs the `docs`
# extra (Sphinx, MyST, the Furo theme: build-time only, not run-time requirements), builds
# from scratch with `-W --keep-going` (a broken cross-reference, a malformed docstring or a
# missing page fails the build) and checks that every public name has an API entry
# (tools/check_docs_api.py). Extra arguments go to sphinx-build.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$REPO/scripts/bootstrap.sh"
VENV="${DETLOSS_VENV:-$REPO/.venv}"
PY="$VENV/bin/python"
cd "$REPO"
if ! "$PY" -c "import sphinx, myst_parser, furo" 2>/dev/null; then
    echo "[detloss docs] installing the docs extra"
    PIP_CONSTRAINT="$VENV/.detloss-constraints.txt" "$PY" -m pip install -q \
        --disable-pip-version-check --no-build-isolation -e ".[docs]"
fi
OUT="$REPO/docs/_build/html"
rm -rf "$REPO/docs/_build"
"$PY" -m sphinx -W --keep-going -E -q -b html docs "$OUT" "$@"
"$PY" tools/check_docs_api.py "$OUT/objects.inv"
echo "[detloss docs] built $OUT/index.html"
