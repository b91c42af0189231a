#!/usr/bin/env bash
# On the development machine, after a call of scripts/gpu-study.sh: the block's database from the
# device tool's folder (FILES_AT, gzipped in parts) into .gpu/study/NAME.sqlite.gz (ignored by git,
# carried to the device with .gpu: read by the next call on a fresh machine; study/README.md) and
# into results/study/NAME.sqlite (for `lazyfeat report`, `lazyfeat runs`, sqlite3); the binary
# that the call built, if any, into .gpu/bin/ (gpu-study.sh uses it while the sources are the same).
# Usage: scripts/gpu-study-fetch.sh FILES_AT NAME
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
from=${1:?FILES_AT}; name=${2:?NAME}
ls "$from/$name.sqlite.gz.part"* > /dev/null
mkdir -p "$root/.gpu/study" "$root/results/study"
cat "$from/$name.sqlite.gz.part"* > "$root/.gpu/study/$name.sqlite.gz.tmp"
gunzip -c "$root/.gpu/study/$name.sqlite.gz.tmp" > "$root/results/study/$name.sqlite.tmp"
mv "$root/.gpu/study/$name.sqlite.gz.tmp" "$root/.gpu/study/$name.sqlite.gz"
mv "$root/results/study/$name.sqlite.tmp" "$root/results/study/$name.sqlite"
[ -e "$from/$name-logs.tgz" ] && cp "$from/$name-logs.tgz" "$root/results/study/"
# The binary the call built (gpu-study.sh), for the next call's fresh machine: the latest only.
for bin in "$from"/lazyfeat-*.gz; do
  [ -s "$bin" ] || continue
  mkdir -p "$root/.gpu/bin" && rm -f "$root"/.gpu/bin/lazyfeat-*.gz && cp "$bin" "$root/.gpu/bin/"
  echo "binary: .gpu/bin/$(basename "$bin") ($(du -h "$bin" | cut -f1))"
done
sqlite3 "$root/results/study/$name.sqlite" "select status, count(*) from runs group by status"
