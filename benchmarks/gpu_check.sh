#!/usr/bin/env bash
# The GPU measurement of the speed issue in one script: under 8 minutes on one H100 / H200 (torch 2.14, bf16).
#
#   bash benchmarks/gpu_check.sh        # results: $OUT (default benchmarks/results/gpu_check), numbers on stdout
#
# Targets it measures (Swin-T, 480x640, bf16 autocast, compile for both sides):
#   train step: IV-tuning <= 0.6x of dual-branch at batch 8;  inference: IV-tuning <= 1.3x of the plain compiled
#   timm forward at batch 2. Plus: the eager numbers beside them, a batch sweep (2 / 8 / 32, eager) that shows where
#   the launch cost stops dominating, and one profiled step per target row (CUDA kernels launched, GPU busy time
#   against wall time: a GPU busy for a small part of the wall time waits on the host).
#
# Steps run in priority order, each with its own limit, and the whole script stops at BUDGET_S (default 450 s): an
# over-long compile costs only the steps after it. Every step writes its .json / .md as each row is measured.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
OUT=${OUT:-benchmarks/results/gpu_check}
BUDGET_S=${BUDGET_S:-450}
mkdir -p "$OUT"
start=$(date +%s)

left() { echo $(( BUDGET_S - ($(date +%s) - start) )); }

step() {  # step NAME MAX_SECONDS ARGS...: benchmarks/efficiency.py ARGS, limited to min(MAX_SECONDS, time left)
    local name=$1 max=$2 t
    shift 2
    t=$(left)
    (( t > max )) && t=$max
    if (( t < 30 )); then
        echo "== $name: skipped, $(left) s of the budget left"
        return 1
    fi
    echo "== $name (limit $t s, $(( $(date +%s) - start )) s elapsed)"
    timeout --signal=INT --kill-after=10 "$t" "$PY" benchmarks/efficiency.py --out "$OUT" --tag "$name" "$@"
    local rc=$?
    (( rc != 0 )) && echo "== $name: exit $rc (124: over its limit; rows measured so far are in $OUT)"
    return $rc
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader || true
"$PY" -c "import torch, timm; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'timm', timm.__version__,
'gpu', torch.cuda.get_device_name(0), 'cpus', __import__('os').cpu_count())"

COMMON=(--backbones swin-t --size 480 640 --no-ops --in-process)

# 1. train-step target: batch 8, eager and compiled, IV-tuning vs dual-branch, one profiled step each
step swin-t_train_b8 210 "${COMMON[@]}" --methods iv-tuning dual-branch --batches 8 --compile --skip-infer \
    --warmup 2 --repeats 8 --profile

# 2. inference target: batch 2, eager and compiled (CUDA graphs), against the plain (compiled) timm forward;
#    without CUDA graphs if the graph run fails
step swin-t_infer_b2 120 "${COMMON[@]}" --methods plain iv-tuning dual-branch --batches 2 --compile --skip-train \
    --warmup 3 --repeats 20 --profile \
  || step swin-t_infer_b2_nographs 90 "${COMMON[@]}" --methods plain iv-tuning --batches 2 --compile \
    --skip-train --no-cuda-graphs --warmup 3 --repeats 20 --profile

# 3. batch sweep, eager: where launch cost stops dominating (train step and peak memory)
step swin-t_sweep 100 "${COMMON[@]}" --methods iv-tuning dual-branch frozen --batches 2 8 32 --skip-infer \
    --warmup 2 --repeats 5

# 4. ViT-S, if time is left: compiled and eager train step (batch 8) and inference (batch 2)
step vit-s_train_b8 70 --backbones vit-s --size 480 640 --no-ops --in-process --methods iv-tuning dual-branch \
    --batches 8 --compile --skip-infer --warmup 2 --repeats 8
step vit-s_infer_b2 50 --backbones vit-s --size 480 640 --no-ops --in-process --methods plain iv-tuning \
    --batches 2 --compile --skip-train --warmup 3 --repeats 20

# 5. op counts (CPU, fp32, 224x320, batch 2; machine-independent, also measured on the CPU machine)
step ops 60 --ops-only --cpu --backbones vit-s swin-t --methods plain frozen iv-tuning dual-branch

echo "== reports ($(( $(date +%s) - start )) s)"
for md in "$OUT"/efficiency*.md; do
    [ -e "$md" ] && { echo "---- $md"; cat "$md"; }
done
"$PY" - "$OUT" <<'EOF'
"""The targets, from the rows just written (every number printed, met or not)."""
import glob
import json
import sys

rows = [r for f in sorted(glob.glob(f"{sys.argv[1]}/efficiency*.json")) for r in json.load(open(f))["rows"]]


def get(backbone, method, batch, compiled, key):
    for r in rows:
        if (r["backbone"], r["method"], r["batch"], r.get("compiled")) == (backbone, method, batch, compiled) \
                and r.get(key) is not None:
            return r[key]
    return None


def line(what, a, b, target):
    if a is None or b is None:
        print(f"{what}: not measured")
        return
    verdict = "met" if a / b <= target else "missed"
    print(f"{what}: {a:.1f} / {b:.1f} ms = {a / b:.2f}x (target <= {target}x: {verdict})")


for bb in ("swin-t", "vit-s"):
    for compiled in (True, False):
        tag = "compiled" if compiled else "eager"
        line(f"{bb} train step b8 {tag}, iv-tuning / dual-branch", get(bb, "iv-tuning", 8, compiled, "train_ms"),
             get(bb, "dual-branch", 8, compiled, "train_ms"), 0.6)
        line(f"{bb} inference b2 {tag}, iv-tuning / plain {tag}", get(bb, "iv-tuning", 2, compiled, "infer_ms"),
             get(bb, "plain", 2, compiled, "infer_ms"), 1.3)
for r in rows:
    for kind in ("train_profile", "infer_profile"):
        p = r.get(kind)
        if p:
            busy = p["gpu_busy_fraction"]
            print(f"profile {r['backbone']} {r['method']} b{r['batch']} {'compiled' if r.get('compiled') else 'eager'}"
                  f" {kind.split('_')[0]}: wall {p['wall_ms']:.1f} ms, {p['cuda_kernels']} CUDA kernels, GPU busy "
                  f"{p['gpu_busy_ms'] or 0:.1f} ms ({(busy or 0) * 100:.0f} %)")
EOF
echo "== done in $(( $(date +%s) - start )) s"
