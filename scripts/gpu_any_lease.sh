#!/usr/bin/env bash
# Issue 36 on a lent GPU: an any-style model trained at a GPU's pace on as many paintings as the lease can carry,
# judged afterwards on this side's CPU. Plan for ~15 minutes of device time in all, start-up included.
#
# Here, before each call (what travels is capped at 64 MiB: the repository, .whl/ and one slice of .gpu/):
#   python scripts/gpu_pack.py --slice K          # K = 0: photos + the first paintings; 1, 2, ...: more paintings
# On the GPU machine (device `run`, carry [".whl", ".gpu"]), in the repository's root:
#   scripts/gpu_any_lease.sh keep                          # adds .gpu/data to .gpu-kept/ (a warm machine keeps it)
#   scripts/gpu_any_lease.sh train any|wct MINUTES $OUT    # experiment=gpu_any or gpu_wct on .gpu-kept/ -> $OUT
# A short call with one further slice each (keep) takes seconds; then one train call (at most ~9 of its 10 minutes).
# Back here, the judge (the seven held-out paintings x four eval photos, the curves cached on this machine):
#   python scripts/eval_any.py OUT/model.safetensors any wct -o eval_gpu/
set -u
MODE=${1:?give keep or train}
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then  # what the GPU image lacks (scripts/gpu_pack.py names them)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "error: installing .whl failed"; exit 1; }
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
KEPT=$PWD/.gpu-kept  # ignored by git: the device keeps ignored files between calls to a warm machine

case "$MODE" in
keep)
    [ -d .gpu/data ] || { echo "error: no .gpu/data here: run scripts/gpu_pack.py and carry .gpu"; exit 1; }
    mkdir -p "$KEPT"
    cp -r .gpu/data/. "$KEPT"/
    echo "kept: $(find "$KEPT/paintings" -type f | wc -l) paintings, $(find "$KEPT/content" -type f 2>/dev/null | wc -l) photos"
    ;;
train)
    KIND=${2:?give any or wct}
    MINUTES=${3:?give the training minutes}
    OUT=${4:?give the folder for the results}
    [ -d "$KEPT/content" ] || { echo "error: nothing kept: call 'keep' with slice 0 first"; exit 1; }
    mkdir -p "$OUT"
    { nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
      python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
      echo "paintings: $(find "$KEPT/paintings" -type f | wc -l)"; } | tee "$OUT/machine.txt"
    RUN=outputs/gpu-lease-$KIND
    rm -rf "$RUN"
    # eval off here: the judge runs on the CPU afterwards, on the held-out paintings, not a training one
    STYLENET_DATA=$KEPT timeout $((MINUTES * 60 + 120)) python3 train.py experiment=gpu_$KIND \
        "trainer.max_time=00:00:$(printf %02d "$MINUTES"):00" eval.every_n_steps=0 samples.every_n_steps=0 \
        hydra.run.dir=$RUN >"$OUT/train.log" 2>&1
    echo "train rc=$?"
    tail -c 2000 "$OUT/train.log" | tr '\r' '\n' | tail -5
    cp "$RUN"/model.safetensors "$OUT/" 2>/dev/null && ls -la "$OUT/model.safetensors"
    ;;
*)
    echo "error: $MODE: give keep or train"; exit 2
    ;;
esac
