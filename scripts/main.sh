#!/usr/bin/env bash
# README command 1: set up what is missing, build, then the main job.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup.sh" "$root/build"
"$root/build/lazyfeat" --version
"$root/build/lazyfeat" data --dataset mnist --ptr 5000 --pte 50000 --pca 10
