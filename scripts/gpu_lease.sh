#!/usr/bin/env bash
# The GPU checklist (BENCHMARKS.md) cut to fit a short GPU lease (~8 minutes of work): each step has its own time
# limit and appends to RESULTS as it finishes, so a step that fails or runs long costs only itself.
#   scripts/gpu_lease.sh RESULTS_DIR [TRAIN_MINUTES] [DEADLINE_SECONDS]
# The training run is shortened (or skipped) so that everything ends by DEADLINE_SECONDS (default 540).
# Runs where stylenet's dependencies are importable; a folder .whl/ of wheels (packages the machine lacks) is
# installed into /tmp/site first, and .gpu/data (paintings and photos) and .gpu/cache (eval's cached Gatys
# curves) are used when present. `make bench-gpu` and `make gpu-train` are the whole checklist.
set -u
OUT=${1:?give a folder for the results}
TRAIN_MINUTES=${2:-3}
DEADLINE=${3:-540}
mkdir -p "$OUT"
LOG="$OUT/gpu.log"
ROWS="$OUT/bench-gpu.jsonl"
START=$SECONDS
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        >>"$LOG" 2>&1 || { echo "error: installing .whl failed (see $LOG)"; exit 1; }
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
[ -d .gpu/data ] && export STYLENET_DATA=$PWD/.gpu/data
[ -d .gpu/cache ] && export STYLENET_CACHE=$PWD/.gpu/cache
PY=python3

{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv; nproc;
  $PY -c "import torch, pytorch_lightning as pl; print('torch', torch.__version__, 'lightning', pl.__version__, torch.cuda.get_device_name())"; } \
    >>"$LOG" 2>&1
# fail fast (seconds, not minutes) when something does not import or run here
$PY -c "import stylenet.cli, stylenet.benchmarks.bench, stylenet.training.trainer, hydra, torchdata" >>"$LOG" 2>&1 \
    || { tail -5 "$LOG"; echo "error: stylenet does not import here"; exit 1; }

step() {  # step SECONDS NAME COMMAND...: run with a time limit; JSON rows to ROWS, everything to LOG
    local limit=$1 name=$2; shift 2
    local began=$SECONDS
    echo "== $name" >>"$LOG"
    timeout "$limit" "$@" > >(tee -a "$LOG" | grep '^{' >>"$ROWS") 2>>"$LOG"
    local rc=$?
    printf '%-34s rc=%-3s %4ss (total %ss)\n' "$name" "$rc" "$((SECONDS - began))" "$((SECONDS - START))" | tee -a "$OUT/steps.txt"
}

B="$PY -m stylenet bench --device cuda --warmup 3 --repeats 10"
# the tests that only a GPU runs (a captured training step learns as the eager one does, every kind captures); needs pytest there
step 90 gpu-tests             $PY -m pytest -q -p no:cacheprovider tests/test_bench.py -k "captured or cuda_graph_rows"
step 60 train-baseline        $B train --loss-network vgg16 --baseline
step 60 train-fp32            $B train --loss-network vgg16 --precision fp32
step 60 train-bf16            $B train --loss-network vgg16 --precision bf16
step 60 train-bf16-cl         $B train --loss-network vgg16 --precision bf16 --channels-last
step 60 train-bf16-nocudnnbm  $B train --loss-network vgg16 --precision bf16 --no-cudnn-benchmark
step 60 train-bf16-graph      $B train --loss-network vgg16 --precision bf16 --cuda-graph
step 60 train-bf16-cl-graph   $B train --loss-network vgg16 --precision bf16 --channels-last --cuda-graph
step 60 train-caffe-graph     $B train --cuda-graph
step 120 train-bf16-compile   $B train --loss-network vgg16 --precision bf16 --compile
step 60 train-caffe-auto      $B train
step 60 train-multistyle      $B train --model multistyle
step 60 train-adain           $B train --model adain
step 60 infer-baseline        $B infer --baseline --sizes 1024,3840x2160 --backends eager
step 90 infer-ours            $B infer --sizes 1024,3840x2160 --precisions fp32,bf16,fp16 --backends eager
step 60 infer-cl              $B infer --sizes 3840x2160 --precisions bf16,fp16 --backends eager --channels-last
step 120 infer-compile        $B infer --sizes 3840x2160 --precisions bf16,fp16 --backends compile
step 90 infer-kinds           $B infer --model transformer_small,multistyle,adain --sizes 1024,3840x2160 --precisions fp32,bf16 --backends eager
step 60 optimize-baseline     $B optimize --baseline
step 60 optimize-bf16         $B optimize --precision bf16

LEFT=$(( (DEADLINE - (SECONDS - START) - 120) / 60 ))  # minutes, keeping 2 for start-up, the last eval and export
[ "$LEFT" -lt "$TRAIN_MINUTES" ] && TRAIN_MINUTES=$LEFT
if [ "$TRAIN_MINUTES" -gt 0 ] && [ -d .gpu/data ]; then
    # the full recipe (experiment=gpu) for TRAIN_MINUTES, eval every 1000 steps, the model and its report kept
    step $((TRAIN_MINUTES * 60 + 150)) train-gpu $PY train.py style=starry_night experiment=gpu \
        "trainer.max_time=00:00:$(printf %02d "$TRAIN_MINUTES"):00" hydra.run.dir=outputs/gpu-lease
    run=outputs/gpu-lease
    cp "$run"/*.safetensors "$OUT/" 2>/dev/null
    (cd "$run" && tar czf "$OUT/run.tgz" --exclude='*.ckpt' --exclude='*.safetensors' .) 2>/dev/null
fi
echo "done in $((SECONDS - START)) s" | tee -a "$OUT/steps.txt"
