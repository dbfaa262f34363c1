#!/usr/bin/env bash
# Set up everything detloss needs in a virtual environment (default: ./.venv).
#
# Idempotent: a second run checks a stamp and the imports and installs nothing.
# The slow part is mmcv 2.1.0, which has no wheel on PyPI and is built from source
# with its compiled ops (20-40 minutes on 2 cores the first time; pip's wheel cache
# makes later installs on the same machine take seconds).
#
# Environment:
#   DETLOSS_VENV   where the virtual environment lives (default: <repo>/.venv)
#   PYTHON         interpreter used to create it (default: python3.11, else python3)
#   TORCH_SPEC     torch requirement when the environment has no torch yet (default:
#                  torch==2.13.0, the CPU wheel on disk; keep it pinned exactly: a range
#                  pulls a multi-GB CUDA build)
#
# An environment that already has torch, or mmcv with its compiled ops (mmcv 2.0.x-2.1.x,
# e.g. a CUDA build from `mim install`), keeps them: they are never reinstalled, upgraded
# or rebuilt. Every pip call after that check runs with a constraints file pinning the
# installed torch and mmcv versions, so no dependency can replace them either.
#   FORCE_CUDA=1   build mmcv's CUDA ops too (set automatically when nvcc is found and
#                  torch sees a GPU); TORCH_CUDA_ARCH_LIST e.g. "9.0" for H100/H200
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DETLOSS_VENV:-$REPO/.venv}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
MMCV_SPEC="mmcv==2.1.0"
STAMP="$VENV/.detloss-bootstrap"
# The stamp records what was installed; editing this script or pyproject.toml
# invalidates it.
WANT="$(cat "$0" "$REPO/pyproject.toml" | sha256sum | cut -c1-16) $TORCH_SPEC"

log() { echo "[detloss bootstrap] $*"; }

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] \
    && "$VENV/bin/python" -c "import mmcv.ops, mmdet.models, detloss_plugin" 2>/dev/null; then
    log "environment at $VENV is ready (nothing to install)"
    exit 0
fi

if [[ -z "${PYTHON:-}" ]]; then
    PYTHON="$(command -v python3.11 || command -v python3)"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating virtual environment $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

if "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    log "keeping the installed torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
else
    log "installing $TORCH_SPEC"
    "${PIP[@]}" install -q "$TORCH_SPEC"
fi

# Pin what is installed now (torch, and mmcv if present) for every later pip call.
CONSTRAINTS="$VENV/.detloss-constraints.txt"
pin_installed() {
    "$VENV/bin/python" - "$CONSTRAINTS" <<'PY'
import sys
from importlib import metadata
pins = []
for name in ('torch', 'mmcv'):
    try:
        pins.append(f'{name}=={metadata.version(name)}')
    except metadata.PackageNotFoundError:
        pass
open(sys.argv[1], 'w').write(''.join(p + '\n' for p in pins))
PY
}
pin_installed
export PIP_CONSTRAINT="$CONSTRAINTS"   # = --constraint for every later pip call

if "$VENV/bin/python" -c "
import mmcv, mmcv.ops
from packaging.version import Version
assert Version('2.0.0rc4') <= Version(mmcv.__version__) < Version('2.2.0')" 2>/dev/null; then
    log "keeping the installed mmcv $("$VENV/bin/python" -c 'import mmcv; print(mmcv.__version__)') with compiled ops"
else
    # mmcv's setup.py imports torch and pkg_resources at module level: it must see the
    # venv's torch (no build isolation; under isolation pip silently builds it without
    # ops) and an old setuptools. torch asks for setuptools>=77 but does not need it to
    # run; the newer one is put back right after the build.
    # mmcv's own run-time dependencies first, at versions that suit mmcv 2.1.0 / mmdet
    # 3.3.0 (numpy 1.x; opencv-python 5 asks for numpy 2).
    "${PIP[@]}" install -q "numpy<2" "opencv-python==4.10.0.84" mmengine==0.10.7
    "${PIP[@]}" install -q "setuptools<70" wheel ninja 2>&1 | grep -v "dependency conflicts\|requires setuptools" || true
    "${PIP[@]}" uninstall -q -y mmcv mmcv-lite >/dev/null 2>&1 || true
    if command -v nvcc >/dev/null 2>&1 \
        && "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        export FORCE_CUDA="${FORCE_CUDA:-1}"
        log "nvcc and a GPU found: building mmcv's CUDA ops as well (FORCE_CUDA=$FORCE_CUDA)"
    fi
    log "building $MMCV_SPEC from source with its compiled ops."
    log "The first build takes 20-40 minutes on 2 cores; later installs on this machine"
    log "reuse pip's wheel cache and take seconds. Progress: one line per compiled file."
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "${PIP[@]}" install -v \
        --no-build-isolation "$MMCV_SPEC" 2>&1 \
        | grep --line-buffered -E "^\s*\[[0-9]+/[0-9]+\]|Successfully|ERROR|error:" \
        | sed -u -E 's/^\s*(\[[0-9]+\/[0-9]+\]).* -c ([^ ]+).*/\1 \2/'
    "$VENV/bin/python" -c "import mmcv.ops" \
        || { log "mmcv was installed without its compiled ops (mmcv._ext missing)"; exit 1; }
    pin_installed   # the mmcv just built is kept from now on as well
fi

log "installing mmengine, mmdet and the test/plot dependencies"
# setuptools<82 keeps pkg_resources, which mmengine 0.10.7 imports at run time;
# >=77 is what torch's metadata asks for. numpy<2: mmcv 2.1.0 / mmdet 3.3.0 predate it
# (and opencv-python 5 would pull numpy 2 back in). An mmengine / mmdet already
# installed is kept.
STACK=("setuptools>=77,<82" "numpy<2" "opencv-python==4.10.0.84" pycocotools "pytest>=7" matplotlib
       scikit-learn)  # scikit-learn: mmdet's PAA head (tests/integration/test_zoo.py)
"$VENV/bin/python" -c "import mmengine" 2>/dev/null || STACK+=(mmengine==0.10.7)
"$VENV/bin/python" -c "import mmdet" 2>/dev/null || STACK+=(mmdet==3.3.0)
"${PIP[@]}" install -q "${STACK[@]}"
log "installing detloss_plugin (editable)"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e "$REPO"

"$VENV/bin/python" -c "import mmcv.ops, mmdet.models, detloss_plugin; print('[detloss bootstrap] imports OK: mmcv', __import__('mmcv').__version__, 'mmdet', __import__('mmdet').__version__)"
echo "$WANT" > "$STAMP"
