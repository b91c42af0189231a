#!/usr/bin/env bash
# README command 2: set up what is missing, build, run the whole test suite (CTest).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup.sh" "$root/build"
ctest --test-dir "$root/build" --output-on-failure -j 2
