#!/usr/bin/env bash
# The report of the paper-scale study (docs/results/, issue 22) from the block databases that
# scripts/gpu-study.sh brings back (.gpu/study/*.sqlite.gz): `lazyfeat report` on all of them as one
# study (a --db each) into docs/results/ (PNG, SVG, CSV, the gnuplot scripts and index.html; no
# database), then the run counts of runs.csv as the table that docs/results/README.md states
# (tests/test_results.cpp holds the two equal). A report of fewer converged runs than the one in
# docs/results/ is refused unless FORCE=1.
# Usage: scripts/results.sh [lazyfeat binary, default build/lazyfeat]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lf=${1:-$root/build/lazyfeat}
cd "$root"
mkdir -p results/study  # ignored; the paths that the page names
dbs=()
for gz in .gpu/study/*.sqlite.gz; do
  db=results/study/$(basename "$gz" .gz)
  gunzip -c "$gz" > "$db"
  dbs+=(--db "$db")
done
rm -rf docs/results.new
"$lf" report "${dbs[@]}" --out docs/results.new 2>&1 | tail -3
# A report of fewer converged runs than the committed one (databases lost or not yet fetched)
# replaces nothing unless FORCE=1: it stays in docs/results.new/ to be looked at.
converged() { awk -F, '$1 == "converged" {print $2}' "$1" 2>/dev/null || true; }
old=$(converged docs/results/runs.csv); new=$(converged docs/results.new/runs.csv)
if [ -n "$old" ] && [ "${new:-0}" -lt "$old" ] && [ "${FORCE:-0}" != 1 ]; then
  echo "results.sh: the new report has ${new:-0} converged runs, docs/results/ has $old: kept docs/results/" \
       "(the new one is in docs/results.new/; FORCE=1 replaces it)" >&2
  exit 1
fi
# Keep the README; replace everything the report makes.
if [ -f docs/results/README.md ]; then cp docs/results/README.md docs/results.new/; fi
rm -rf docs/results && mv docs/results.new docs/results
du -sh docs/results
echo "README.md's run counts (tests/test_results.cpp):"
echo "| status | runs |"; echo "|---|---|"
tail -n +2 docs/results/runs.csv | sed 's/^\(.*\),\(.*\)$/| \1 | \2 |/'
