#!/usr/bin/env bash
# The GPU figures of issue 13 in one device call that ends within 7.5 minutes: recipes/fast.yaml's seconds per
# epoch and training time to 99.0% test accuracy (with a torch.profiler table of 30 steps in its first epoch),
# train.py's default recipe (bf16, with and without torch.compile), train.py against a hand-written loop
# (bench/bench_train.py), and recipes/small-2m.yaml for the time left. The most wanted figures run first; each
# step has a time limit cut to what is left, and a step that fails does not stop the others.
#
# 1. Here, on this machine, in the repo (the carried folders are ignored, so each session makes them again):
#        bash bench/gpu_prepare.sh
# 2. The device call (the `run` tool), the same every time:
#        command:   bash bench/gpu.sh
#        carry:     [".whl", ".mnist"]
#        timeout_s: 480
#    It installs the carried wheels into /tmp/site, prints one table last, and leaves in $OUT: table.md,
#    results.jsonl (one line per step, full figures per epoch) and log.txt (every step's whole output).
#
# Dry run on a CPU, with tiny sizes and short limits (a few minutes; the wheels are checked for Python 3.12,
# not used): GPU_DRY_RUN=1 bash bench/gpu.sh   (results in runs/gpu-dry-run/)
set -uo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=${GPU_DRY_RUN:-0}
DATA=.mnist
WORK=$(mktemp -d)
if [[ $DRY_RUN == 1 ]]; then
    OUT=runs/gpu-dry-run && rm -rf "$OUT" && mkdir -p "$OUT"
    DEADLINE_S=900  # compiling on two CPU cores is slow
    TINY=(--max_train_samples 1024 --max_eval_samples 1000 --num_train_epochs 2 --use_cpu true)
    BUDGET_DEFAULT=60 BUDGET_FAST=60 BENCH_SIZES=(--steps 2 --rounds 1)
else
    OUT=${OUT:?"is where the device tool collects files; on a CPU, use GPU_DRY_RUN=1"}
    DEADLINE_S=420  # the whole script, so that the call ends within 7.5 minutes
    TINY=()
    BUDGET_DEFAULT=60 BUDGET_FAST=30 BENCH_SIZES=(--steps 400 --rounds 1)
fi
LOG=$OUT/log.txt
RESULTS=$OUT/results.jsonl
export PYTHONUNBUFFERED=1 HF_DATASETS_DISABLE_PROGRESS_BARS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_EVALUATE_OFFLINE=1

# step NAME LIMIT_S COMMAND...: run COMMAND within LIMIT_S (cut to the time left), its output to the log.
step() {
    local name=$1 limit=$2 start=$SECONDS status
    shift 2
    (( limit > DEADLINE_S - SECONDS )) && limit=$(( DEADLINE_S - SECONDS ))
    if (( limit < 20 )); then
        echo "== $name: skipped, ${limit} s left" | tee -a "$LOG"
        return
    fi
    echo "== $name (limit ${limit} s)" | tee -a "$LOG"
    timeout --kill-after=10 "$limit" "$@" >>"$LOG" 2>&1
    status=$?
    (( status == 0 )) || tail -n 20 "$LOG"
    echo "   exit status $status after $(( SECONDS - start )) s" | tee -a "$LOG"
}

# gpu_train NAME BUDGET_S [--stop_at_target] -- TRAIN.PY ARGUMENTS...
gpu_train() {
    local name=$1 budget=$2
    shift 2
    step "$name" $(( budget + 90 )) python3 bench/gpu_train.py --name "$name" --results "$RESULTS" --budget_s "$budget" \
        "$@" --data_dir "$DATA" --output_dir "$WORK/$name" --disable_tqdm true "${TINY[@]}"
}

[[ -d .whl && -d $DATA ]] || { echo "error: .whl or $DATA is missing: run bash bench/gpu_prepare.sh first." >&2; exit 2; }
WHEELS=(python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade)
if [[ $DRY_RUN == 1 ]]; then
    step "wheels (checked for Python 3.12)" 60 "${WHEELS[@]}" --target "$WORK/site" --only-binary=:all: \
        --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 .whl/*.whl
else
    step "wheels" 60 "${WHEELS[@]}" --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
python3 bench/gpu_env.py 2>&1 | tee -a "$LOG"
python3 -c "import mnist_vit.training" >>"$LOG" 2>&1 || { tail -n 30 "$LOG"; echo "error: mnist_vit does not import." >&2; exit 1; }
# One train.py step prepares MNIST as train.py does and caches it (the first preparation takes the longest).
step "data (one train.py step)" 150 python3 train.py --data_dir "$DATA" --output_dir "$WORK/data" --max_steps 1 \
    --eval_strategy no --save_strategy no --load_best_model_at_end false --disable_tqdm true "${TINY[@]}"

gpu_train fast $(( BUDGET_FAST + 10 )) --stop_at_target --profile "$OUT/profile-fast.txt" -- recipes/fast.yaml
gpu_train default-bf16-compile "$BUDGET_DEFAULT" -- --bf16 true --torch_compile true
step "train.py vs hand loop" 120 python3 bench/bench_train.py --data_dir "$DATA" --bf16 "${BENCH_SIZES[@]}" --results "$RESULTS"
gpu_train default-bf16-eager "$BUDGET_DEFAULT" -- --bf16 true
# small-2m for what is left: its budget leaves 60 s for start-up and the final evaluation and report
gpu_train small-2m $(( DEADLINE_S - SECONDS - 60 )) -- recipes/small-2m.yaml --bf16 true --torch_compile true

python3 bench/gpu_table.py "$RESULTS" >"$OUT/table.md" 2>>"$LOG"
echo "whole script: $SECONDS s"
cat "$OUT/table.md"
rm -rf "$WORK"
