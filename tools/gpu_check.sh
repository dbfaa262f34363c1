#!/usr/bin/env bash
# Check detloss on a machine with a GPU, in one command (under 10 minutes on one modern
# GPU), and write one report:
#
#   tools/gpu_check.sh            # report: work_dirs/gpu_check/report.md
#
# The time limits of the steps add up to 590 s (60 + 150 + 60 + 150 + 50 + 120); a step
# that runs over its limit is reported as FAILED (time limit) and the next one runs.
#
# 1. environment: torch, CUDA device, mmcv's CUDA ops (a CUDA nms call), mmdet;
# 2. the CUDA tests: every device-parametrised test (`pytest -m cuda`: every loss and
#    module on CUDA against the CPU's float64 value and gradient, gradcheck on CUDA,
#    forward + backward under torch.cuda.set_sync_debug_mode('error'), DIoU-NMS on CUDA
#    against the CPU's C kernel);
# 3. a short training of mmdet's stock RetinaNet R50-FPN with detloss's GIoULoss and
#    --amp on the synthetic dataset (configs/gpu_check/, generated if missing);
# 4. python -m tools.benchmark --device cuda: DIoU-NMS (its torch backend, and the dense
#    Cluster-NMS form) against mmcv's CUDA nms; then GIoU, gated CIoU and the sigmoid
#    focal loss, eager and torch.compile, against mmdet (and torchvision when it imports).
#
# Environment: PYTHON (default: python), GPU_CHECK_DIR (default: work_dirs/gpu_check).
# Each step has its own time limit; a failed step is reported and the next one runs.
# Exit status: 0 when every step passed.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PY="${PYTHON:-python}"
OUT="${GPU_CHECK_DIR:-$REPO/work_dirs/gpu_check}"
REPORT="$OUT/report.md"
mkdir -p "$OUT"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
FAILED=0

now() { date +%s; }
START=$(now)
{
    echo "# detloss GPU check"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(hostname), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo
} > "$REPORT"

# step NAME LIMIT_S LOG CMD...: run CMD with a time limit, log to LOG, record the outcome
step() {
    local name="$1" limit="$2" log="$3"
    shift 3
    local t0 rc
    t0=$(now)
    echo "[gpu_check] $name (limit ${limit}s) ..."
    timeout --kill-after=10 "$limit" "$@" > "$log" 2>&1
    rc=$?
    local took=$(( $(now) - t0 ))
    if [[ $rc -eq 0 ]]; then status="passed"; else status="FAILED (exit $rc$([[ $rc -eq 124 ]] && echo ', time limit'))"; FAILED=1; fi
    echo "[gpu_check] $name: $status in ${took}s"
    {
        echo "## $name: $status (${took} s)"
        echo
        echo "Command: \`$*\` (log: \`${log#$REPO/}\`)"
        echo
    } >> "$REPORT"
    return $rc
}

excerpt() {   # excerpt LOG PATTERN LINES: matching lines (or the tail) as a code block
    echo '```' >> "$REPORT"
    if [[ -n "$2" ]] && grep -E "$2" "$1" > /dev/null 2>&1; then
        grep -E "$2" "$1" | tail -n "$3" >> "$REPORT"
    else
        tail -n "$3" "$1" >> "$REPORT"
    fi
    echo '```' >> "$REPORT"
    echo >> "$REPORT"
}

# 1. environment ------------------------------------------------------------------------
step "environment" 60 "$OUT/env.log" "$PY" - <<'PY'
import torch
assert torch.cuda.is_available(), 'no CUDA device: tools/gpu_check.sh needs a GPU'
print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'device', torch.cuda.get_device_name(0))
import mmcv, mmdet, mmengine
print('mmcv', mmcv.__version__, 'mmdet', mmdet.__version__, 'mmengine', mmengine.__version__)
from mmcv.ops import nms
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.]], device='cuda')
dets, keep = nms(boxes, torch.tensor([0.9, 0.8], device='cuda'), 0.5)
print('mmcv CUDA ops: nms ok, kept', keep.tolist())
try:
    import torchvision
    print('torchvision', torchvision.__version__)
except Exception as err:
    print('torchvision MISSING:', type(err).__name__, err)
import detloss_plugin
print('detloss', detloss_plugin.__version__, 'from', detloss_plugin.__file__)
PY
ENV_RC=$?
excerpt "$OUT/env.log" "" 12
if [[ $ENV_RC -ne 0 ]]; then
    echo "[gpu_check] the environment is not usable; see $REPORT"
    exit 1
fi

# 2. CUDA tests -------------------------------------------------------------------------
step "CUDA tests (pytest -m cuda)" 150 "$OUT/tests.log" \
    "$PY" -m pytest -m cuda -q -p no:cacheprovider -rfE tests/
excerpt "$OUT/tests.log" "passed|skipped|failed|FAILED|ERROR" 40

# 3. stock RetinaNet R50 training with a detloss loss and --amp ------------------------------
DATA="$REPO/data/synthetic_coco"
if [[ ! -f "$DATA/annotations/instances_train.json" ]]; then
    step "synthetic dataset" 60 "$OUT/dataset.log" \
        "$PY" tools/make_dataset.py --out "$DATA" --seed 0 --num-train 400 --num-val 50 \
        --image-size 320
fi
step "RetinaNet R50-FPN + detloss GIoULoss, --amp, 300 iterations" 150 "$OUT/train.log" \
    "$PY" tools/train.py configs/gpu_check/retinanet_r50_fpn_giou_synthetic.py --amp \
    --work-dir "$OUT/train"
excerpt "$OUT/train.log" "Iter\(train\) \[ *(20|100|200|300)/|bbox_mAP|Traceback|Error:|: nan|: inf" 14

# 4. benchmarks on CUDA -------------------------------------------------------------------
# bench NAME LIMIT TAG ARGS...: one benchmark run, its ratio table into the report
bench() {
    local name="$1" limit="$2" tag="$3"
    shift 3
    step "$name" "$limit" "$OUT/benchmark-$tag.log" \
        "$PY" -m tools.benchmark --device cuda "$@" --out "$OUT/benchmark-$tag.json" \
        --markdown "$OUT/benchmark-$tag.md"
    if [[ -f "$OUT/benchmark-$tag.md" ]]; then
        { echo "Median per call on CUDA, ratio = contender / reference (> 1: the reference"
          echo "is faster); raw numbers and host synchronisations in \`benchmark-$tag.json\`."
          echo; cat "$OUT/benchmark-$tag.md"; echo; } >> "$REPORT"
        grep '^MISSING' "$OUT/benchmark-$tag.log" | sort -u | sed 's/^/- /' >> "$REPORT"
        echo >> "$REPORT"
    else
        excerpt "$OUT/benchmark-$tag.log" "" 30
    fi
}
# DIoU-NMS against mmcv's CUDA nms (1k, 10k, 50k boxes; 0.3 s per contender and size)
bench "DIoU-NMS vs mmcv nms on CUDA" 50 nms --suite diou_nms --min-run-time 0.3
# losses: eager and compiled (inductor compiles during the warm-up: most of the time)
bench "losses on CUDA (eager, torch.compile)" 120 losses --suite iou_family \
    --only giou --only "ciou (alpha_gate)" --suite classification --only "sigmoid focal" \
    --min-run-time 0.3

TOTAL=$(( $(now) - START ))
{ echo "Total: ${TOTAL} s. $([[ $FAILED -eq 0 ]] && echo 'Every step passed.' || echo 'Some steps FAILED (see above).')"; } >> "$REPORT"
echo "[gpu_check] report: $REPORT (${TOTAL} s)"
exit $FAILED
