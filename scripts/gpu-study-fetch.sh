#!/usr/bin/env bash
# On the development machine, after a call of scripts/gpu-study.sh: the block's database parts
# from the device tool's folder (FILES_AT) into .gpu/study/ (carried to the next call), and the
# database itself into results/study/NAME.sqlite (for `lazyfeat report`, `lazyfeat runs`).
# Usage: scripts/gpu-study-fetch.sh FILES_AT NAME
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
from=${1:?FILES_AT}; name=${2:?NAME}
ls "$from/$name.sqlite.gz.part"* > /dev/null
mkdir -p "$root/.gpu/study" "$root/results/study"
rm -f "$root/.gpu/study/$name.sqlite.gz.part"*
cp "$from/$name.sqlite.gz.part"* "$root/.gpu/study/"
cat "$root/.gpu/study/$name.sqlite.gz.part"* | gunzip > "$root/results/study/$name.sqlite.tmp"
mv "$root/results/study/$name.sqlite.tmp" "$root/results/study/$name.sqlite"
[ -e "$from/$name-logs.tgz" ] && cp "$from/$name-logs.tgz" "$root/results/study/"
sqlite3 "$root/results/study/$name.sqlite" "select status, count(*) from runs group by status"
