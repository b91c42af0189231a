#!/usr/bin/env bash
# Issue 24's side-by-side rows (docs/benchmarks.md): the published code and lazyfeat builds on
# this machine, alternating in the same minutes, ROUNDS times.
#   fc:  setup A, FC softplus h = 100, L = 5, ptr = 5000, pte = 10000, alpha = 1, 60 s each from the
#        first step: the steps made (the published code's last progress line, every ~7 steps).
#   cnn: setup B, the CNN h = 32, batch 64, ptr = pte = 5000, alpha = 1e-2: the wall time of the
#        first 115 steps (the published code's progress line at i = 115; lazyfeat's wall_s, at
#        --pte 5000 as the published diagnostics and at --pte 0).
# The published code (mariogeiger/feature_lazy, June 2019) runs with Debian's python3-torch
# (/usr/bin/python3) and OMP_NUM_THREADS=1, its fastest on 2 cores; its MNIST loader comes from a
# few lines standing in for torchvision (not packaged in Debian 12), which read data/mnist.
# Usage: FL=/path/to/feature_lazy scripts/vs-published.sh fc|cnn ROUNDS LAZYFEAT_BINARY...
# Deliberately not: part of the tests (a speed is measured, never asserted).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fl=${FL:?FL=the folder of the published code, a clone of mariogeiger/feature_lazy}
what=${1:?fc or cnn}; rounds=${2:?rounds}; shift 2
[ $# -ge 1 ] || { echo "vs-published.sh: name at least one lazyfeat binary" >&2; exit 2; }
[ -s "$root/data/mnist/train-images-idx3-ubyte" ] || { echo "vs-published.sh: no MNIST in data/mnist (scripts/setup.sh)" >&2; exit 2; }
shim=$(mktemp -d); trap 'rm -rf "$shim"' EXIT
mkdir -p "$shim/torchvision"
cat > "$shim/torchvision/__init__.py" <<EOF
import struct, numpy as np, torch
class transforms:
    class ToTensor:
        def __call__(self, a): return torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(0)
class datasets:
    class MNIST:
        def __init__(self, root, train=True, download=False, transform=None):
            p = '$root/data/mnist/' + ('train' if train else 't10k')
            with open(p + '-images-idx3-ubyte', 'rb') as f:
                _, n, r, c = struct.unpack('>IIII', f.read(16))
                self.x = np.frombuffer(f.read(), np.uint8).reshape(n, r, c)
            with open(p + '-labels-idx1-ubyte', 'rb') as f:
                f.read(8)
                self.y = np.frombuffer(f.read(), np.uint8)
            self.t = transform
        def __len__(self): return len(self.y)
        def __getitem__(self, i): return (self.t(self.x[i]) if self.t else self.x[i]), int(self.y[i])
EOF
seeds=(--init_seed 0 --data_seed 0 --batch_seed 0 --init_kernel 0 --final_kernel 0 --pickle "$shim/out.pkl")
published() {
  (cd "$fl" && PYTHONPATH=$shim OMP_NUM_THREADS=1 timeout "$1" /usr/bin/python3 main.py --device cpu "${@:2}" "${seeds[@]}" \
    2>&1 | tr '\r' '\n' | grep -E '^\[i=' || true)
}
summary() { grep '^{' | tail -1 | python3 -c "import json, sys; d = json.load(sys.stdin); print(*[d[k] for k in sys.argv[1:]])" "$@"; }
for r in $(seq 1 "$rounds"); do
  if [ "$what" = fc ]; then
    echo "round $r published: $(published 150 --dataset mnist --ptr 5000 --pte 10000 --d 10 --arch fc_softplus --spbeta 5 \
      --spsig 1.40438 --L 5 --h 100 --alpha 1 --temp 0 --tau -1000 --train_time 60 --max_bs 5000 | tail -1 | cut -c1-40)"
    for b in "$@"; do
      echo "round $r $b: steps wall_s $("$b" train --h 100 --L 5 --ptr 5000 --pte 10000 --alpha 1 --max-wall 60 --json 2>/dev/null | summary steps wall_s)"
    done
  else
    echo "round $r published: $(published 200 --dataset mnist --ptr 5000 --pte 5000 --arch cv_relu --h 32 --temp 3e-4 --tau 10 \
      --max_bs 64 --alpha 1e-2 --train_time 150 | grep -E '^\[i=11[5-9] ' | head -1 | cut -c1-40)"
    for b in "$@"; do
      for pte in 5000 0; do
        echo "round $r $b --pte $pte: wall_s t f_norm $("$b" train --arch cnn --h 32 --ptr 5000 --pte $pte --temperature 3e-4 --tau 10 \
          --batch-max 64 --seed-batch 0 --alpha 1e-2 --max-steps 115 --json 2>/dev/null | summary wall_s t f_norm)"
      done
    done
  fi
done
