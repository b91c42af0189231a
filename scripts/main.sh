#!/usr/bin/env bash
# README command 1: set up what is missing, build, then the main job: a small real sweep on
# MNIST parity (examples/main-job.toml) into results/main/study.sqlite and its report in
# results/main/report/index.html. Run again, it resumes the sweep where it stopped.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup.sh" "$root/build"
lf="$root/build/lazyfeat"
out="$root/results/main"
mkdir -p "$out"
"$lf" --version
"$lf" data --dataset mnist --ptr 5000 --pte 50000 --pca 10
"$lf" sweep "$root/examples/main-job.toml" --db "$out/study.sqlite" --jobs 2
"$lf" report --db "$out/study.sqlite" --out "$out/report"
echo "report: $out/report/index.html"
