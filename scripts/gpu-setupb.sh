#!/usr/bin/env bash
# On the GPU machine, in one call of the device tool: the paper-setting runs of setup B (protocol
# section 6: the CNN at h = 32, n = 5000, 50,000 test points, tau = 10, T = 3e-4, batches of at most
# 64, seed-batch 0), alpha = 1e-2 and alpha = 100, side by side on one GPU, each resumed from the
# study database if it holds the run. A call trains until the runs' total wall time reaches WALL
# seconds (default 420), saving a state every minute; carry the database back in for the next call:
#   run: OUT=$OUT DB=.gpu/setupb.sqlite WALL=420 scripts/gpu-setupb.sh     (carry [".gpu"])
#   then extract $OUT/setupb.tgz, copy its setupb.sqlite to .gpu/ and call again with WALL = the
#   run's stored wall time plus the seconds the next call can give (`lazyfeat runs --db F`).
# Logs, the runs' JSON summaries and the database end up in one file, $OUT/setupb.tgz: the device
# tool brings back only about 8 files. Deliberately not: a sweep (two runs), the tests.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=${OUT:-/tmp/gpu-setupb}
out=$dest/setupb; mkdir -p "$out"  # tarred into $dest/setupb.tgz at the exit (left as files if killed)
trap 'tar czf "$dest/setupb.tgz" -C "$out" . && rm -rf "$out"' EXIT
db=${DB:-$root/.gpu/setupb.sqlite}
wall=${WALL:-420}
build=${BUILD:-/tmp/lazyfeat-gpu}
mkdir -p "$root/data/mnist"
for f in "$root"/.gpu/mnist/*.gz; do
  [ -e "$f" ] && gunzip -c "$f" > "$root/data/mnist/$(basename "$f" .gz)"
done
SECONDS=0
TARGET=lazyfeat "$root/scripts/gpu-build.sh" "$build" > "$out/build.log" 2>&1 || { tail -50 "$out/build.log"; exit 1; }
echo "build: ${SECONDS} s"
export LD_LIBRARY_PATH=$root/.gpu/lib:${LD_LIBRARY_PATH:-}
for a in 1e-2 100; do
  OMP_NUM_THREADS=4 "$build/lazyfeat" train --arch cnn --h 32 --ptr 5000 --pte 50000 --temperature 3e-4 --tau 10 \
    --batch-max 64 --seed-batch 0 --alpha $a --device cuda --db "$db" --resume --max-wall "$wall" --state-every 60 \
    --json > "$out/run-alpha$a.json" 2> "$out/run-alpha$a.log" &
done
wait
for a in 1e-2 100; do echo "alpha $a: $(tr '\r' '\n' < "$out/run-alpha$a.log" | grep step | tail -1)"; head -c 700 "$out/run-alpha$a.json"; echo; done
"$build/lazyfeat" runs --db "$db" --json | head -c 3000; echo
cp "$db" "$out/"
echo "total: ${SECONDS} s"
