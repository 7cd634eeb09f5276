#!/usr/bin/env bash
# The CUDA checks, one prepared run on a machine with one NVIDIA GPU (none is on the dev box).
#
#   benchmarks/cuda_checks.sh train OUT DATA_DIR   # time to accuracy, throughput, resume, compile
#   benchmarks/cuda_checks.sh sweep OUT            # several sweep workers sharing GPU 0 (+ MPS)
#   benchmarks/cuda_checks.sh more OUT DATA_DIR    # quick at 12 and 16 epochs; CIFAR trainings sharing GPU 0 (+ MPS)
#
# Each step runs under its own time limit and goes on when one fails. OUT gets summary.txt and
# PART.tar.gz (every step's log, and the benchmark lines this run appended to
# benchmarks/results/*.jsonl). archsearch must be importable (an install, or PYTHONPATH=<repo>)
# along with its dependencies.
set -u
part=$1 FINAL=$2 DATA=${3:-}
export PYTHONUNBUFFERED=1
OUT=/tmp/cuda-checks-$part
mkdir -p "$OUT" "$FINAL"
for f in benchmarks/results/*.jsonl; do wc -l < "$f" > "$OUT/.lines-$(basename "$f")"; done
step() {  # step NAME SECONDS CMD...: run CMD with a time limit, log to OUT/NAME.log
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "[$name] rc=$rc in $((SECONDS - t0))s: $(tail -n 2 "$OUT/$name.log" | tr '\n' ' ' | cut -c1-300)" | tee -a "$OUT/summary.txt"
}
with_mps() {  # with_mps CMD...: run CMD while NVIDIA's Multi-Process Service runs, where it can
  if ! command -v nvidia-cuda-mps-control > /dev/null; then
    echo "[mps] nvidia-cuda-mps-control is not on this machine" | tee -a "$OUT/summary.txt"; return
  fi
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p /tmp/mps-pipe /tmp/mps-log
  if nvidia-cuda-mps-control -d; then
    "$@"
    echo quit | nvidia-cuda-mps-control
  else
    echo "[mps] nvidia-cuda-mps-control -d failed" | tee -a "$OUT/summary.txt"
  fi
  unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, platform; print('torch', torch.__version__, 'python', platform.python_version(), 'cpus', __import__('os').cpu_count())"
} | tee "$OUT/env.txt"

if [ "$part" = train ]; then
  # 1. both recipes on VGG-16 w0.25, the full CIFAR-10 (issue 10's bar, measured on CPU: <= 0.40)
  step tta 180 python3 benchmarks/time_to_accuracy.py --data-dir "$DATA" --device cuda --workdir /tmp/tta
  # 2. our training loop against the original code's, on the GPU (README: no GPU figure yet)
  step throughput 80 python3 benchmarks/train_throughput.py --data-dir "$DATA" --device cuda --arch vgg16 \
    --width 1 --images 12800 --repeats 2
  # 3. resume on CUDA: a run interrupted by Ctrl-C goes on from its checkpoint (CUDA RNG state too)
  step resume-a 22 timeout -s INT 13 python3 -m archsearch train vgg11-digits --preset tiny --epochs 150 \
    --device cuda --checkpoint-every 1 --out /tmp/resume
  step resume-b 45 python3 -m archsearch train vgg11-digits --preset tiny --epochs 150 --device cuda \
    --checkpoint-every 1 --out /tmp/resume
  # 4. torch.compile on CUDA, 2 epochs
  step compile 100 python3 -m archsearch train vgg16-c10 --data-dir "$DATA" --width 0.25 --preset quick \
    --epochs 2 --device cuda --compile --out /tmp/compiled
  # 5. a bad request on this machine: two ranks, one GPU (must be one line, non-zero)
  step nproc2 30 python3 -m archsearch train vgg11-digits --preset tiny --epochs 1 --nproc 2 --out /tmp/ddp
fi

if [ "$part" = sweep ]; then
  # several small trainings sharing one GPU: 1 worker x 16 threads, 2 x 8, 4 x 4 (quickstart grid)
  step sweep-gpu 170 python3 benchmarks/sweep_throughput.py --gpu --configs 1x16,2x8,4x4
  with_mps step sweep-gpu-mps 100 python3 benchmarks/sweep_throughput.py --gpu --configs 1x16,4x4 --mps-label on
fi

if [ "$part" = more ]; then
  # where quick reaches fast's best on a GPU (8 epochs fell 0.9 short); fast's run is reused
  step tta-quick12 150 python3 benchmarks/time_to_accuracy.py --data-dir "$DATA" --device cuda --workdir /tmp/tta \
    --candidate-epochs 12
  step tta-quick16 80 python3 benchmarks/time_to_accuracy.py --data-dir "$DATA" --device cuda --workdir /tmp/tta \
    --candidate-epochs 16
  # four CIFAR trainings sharing GPU 0, against one at a time, without and with MPS
  step share 150 python3 benchmarks/gpu_sharing.py --data-dir "$DATA"
  with_mps step share-mps 120 python3 benchmarks/gpu_sharing.py --data-dir "$DATA" --mps-label on
fi
for f in benchmarks/results/*.jsonl; do  # the lines this run appended
  n=$(cat "$OUT/.lines-$(basename "$f")" 2>/dev/null || echo 0)
  tail -n +$((n + 1)) "$f" > "$OUT/new-$(basename "$f")"; [ -s "$OUT/new-$(basename "$f")" ] || rm "$OUT/new-$(basename "$f")"
done
rm -f "$OUT"/.lines-*
tar czf "$FINAL/$part.tar.gz" -C "$(dirname "$OUT")" "$(basename "$OUT")"
cp "$OUT/summary.txt" "$FINAL/"
