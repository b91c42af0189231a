#!/usr/bin/env bash
# On the development machine, after a call of scripts/gpu-study.sh: the block's database from the
# device tool's folder (FILES_AT, gzipped in parts) into study/NAME.sqlite.gz (in git: the only
# thing that outlives a session; the next call on a fresh machine resumes from it; study/README.md)
# and into results/study/NAME.sqlite (for `lazyfeat report`, `lazyfeat runs`, sqlite3).
# Usage: scripts/gpu-study-fetch.sh FILES_AT NAME
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
from=${1:?FILES_AT}; name=${2:?NAME}
ls "$from/$name.sqlite.gz.part"* > /dev/null
mkdir -p "$root/results/study"
cat "$from/$name.sqlite.gz.part"* > "$root/study/$name.sqlite.gz.tmp"
gunzip -c "$root/study/$name.sqlite.gz.tmp" > "$root/results/study/$name.sqlite.tmp"
mv "$root/study/$name.sqlite.gz.tmp" "$root/study/$name.sqlite.gz"
mv "$root/results/study/$name.sqlite.tmp" "$root/results/study/$name.sqlite"
[ -e "$from/$name-logs.tgz" ] && cp "$from/$name-logs.tgz" "$root/results/study/"
sqlite3 "$root/results/study/$name.sqlite" "select status, count(*) from runs group by status"
