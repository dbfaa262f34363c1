#!/usr/bin/env bash
# detloss demo: set up, generate the synthetic dataset, train the quick-start RetinaNet
# with a detloss regression loss on the CPU, evaluate it (COCO mAP, AP50, AP75) and draw
# a picture of the run (loss and mAP curves, predictions on validation images).
#
# About ten minutes on 2 CPU cores, after the one-time mmcv build of scripts/bootstrap.sh.
#
# Environment:
#   LOSS            regression loss of configs/quickstart/retinanet_r18-slim_<LOSS>_synthetic.py
#                   (default giou; also iou diou ciou efficient-iou focal-eiou l1 mse
#                   smoothl1 focal-l1 ciou-diounms)
#   WORK_DIR        default work_dirs/demo_<LOSS>
#   DATA_DIR        default data/synthetic_coco (generated once, seed 0)
#   MAX_ITERS       training iterations (default: the config's)
#   OMP_NUM_THREADS torch threads (default 1: one thread computes while the data loader
#                   process decodes images, which uses 2 cores without oversubscribing
#                   them; on a dedicated machine with more cores, raise it)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
VENV="${DETLOSS_VENV:-$REPO/.venv}"
PY="$VENV/bin/python"
LOSS="${LOSS:-giou}"
CONFIG="configs/quickstart/retinanet_r18-slim_${LOSS}_synthetic.py"
WORK_DIR="${WORK_DIR:-work_dirs/demo_${LOSS}}"
DATA_DIR="${DATA_DIR:-data/synthetic_coco}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export PYTHONUNBUFFERED=1

say() { echo; echo "==== [detloss demo] $*"; }
START=$(date +%s)
if [[ ! -f "$CONFIG" ]]; then
    echo "no quick-start config for LOSS=$LOSS ($CONFIG); choose one of:"
    ls configs/quickstart/*.py | sed -E 's/.*retinanet_r18-slim_(.*)_synthetic.py/  \1/'
    exit 2
fi

say "1/5 environment (scripts/bootstrap.sh)"
"$REPO/scripts/bootstrap.sh"

say "2/5 synthetic dataset in $DATA_DIR"
"$PY" tools/make_dataset.py --out "$DATA_DIR" --seed 0 --num-train 800 --num-val 200

OPTS=("data_root=$DATA_DIR/"
      "train_dataloader.dataset.data_root=$DATA_DIR/"
      "val_dataloader.dataset.data_root=$DATA_DIR/"
      "test_dataloader.dataset.data_root=$DATA_DIR/"
      "val_evaluator.ann_file=$DATA_DIR/annotations/instances_val.json"
      "test_evaluator.ann_file=$DATA_DIR/annotations/instances_val.json")
if [[ -n "${MAX_ITERS:-}" ]]; then
    OPTS+=("train_cfg.max_iters=$MAX_ITERS" "param_scheduler.1.end=$MAX_ITERS"
           "param_scheduler.1.T_max=$((MAX_ITERS - 100))")
fi

# mmengine logs a lot (the whole config, weight initialisation); the console shows the
# progress lines, the full log is in $WORK_DIR/*.log.
filter() { grep --line-buffered -E 'Iter\(|bbox_mAP_copypaste|Saving checkpoint|Error|error:|Traceback|\[detloss' || true; }
mkdir -p "$WORK_DIR"

say "3/5 training $CONFIG on the CPU (log: $WORK_DIR/train.log)"
set +o pipefail
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" --cfg-options "${OPTS[@]}" 2>&1 \
    | tee "$WORK_DIR/train.log" | filter
rc=${PIPESTATUS[0]}
set -o pipefail
if [[ $rc -ne 0 ]]; then tail -n 40 "$WORK_DIR/train.log"; exit "$rc"; fi
CKPT="$(cat "$WORK_DIR/last_checkpoint")"

say "4/5 evaluating $CKPT on the validation split (log: $WORK_DIR/test.log)"
set +o pipefail
"$PY" tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK_DIR/test" \
    --json-prefix "$WORK_DIR/test/predictions" --cfg-options "${OPTS[@]}" 2>&1 \
    | tee "$WORK_DIR/test.log" | filter
rc=${PIPESTATUS[0]}
set -o pipefail
if [[ $rc -ne 0 ]]; then tail -n 40 "$WORK_DIR/test.log"; exit "$rc"; fi

say "5/5 drawing the run"
"$PY" tools/plot_training.py "$WORK_DIR" --out "$WORK_DIR/demo.png" \
    --pred-json "$WORK_DIR/test/predictions.bbox.json" \
    --ann-file "$DATA_DIR/annotations/instances_val.json" --img-dir "$DATA_DIR/val" \
    --title "RetinaNet (ResNet-18 slim) with detloss $LOSS on the synthetic dataset"

"$PY" - "$WORK_DIR/test/test_metrics.json" "$LOSS" "$(( $(date +%s) - START ))" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
print()
print(f'==== [detloss demo] results: RetinaNet + {sys.argv[2]} loss, val split (200 images)')
print(f"  COCO mAP  {m['coco/bbox_mAP']:.3f}")
print(f"  AP50      {m['coco/bbox_mAP_50']:.3f}")
print(f"  AP75      {m['coco/bbox_mAP_75']:.3f}")
mins, secs = divmod(int(sys.argv[3]), 60)
print(f'  total time {mins} min {secs:02d} s')
EOF
echo "  picture: $(cd "$WORK_DIR" && pwd)/demo.png"
