#!/usr/bin/env bash
# On the GPU machine, in one call of the device tool: one block of the paper-scale study (a sweep
# specification under examples/, docs/results/README.md) for WALL seconds, then its database back
# through the device's output folder. Resumable from call to call:
#  - on a warm machine (the next call within the device's idle window) the database is still in
#    build-gpu/study/, an ignored folder of the repository's copy there, and the build is reused;
#  - on a fresh machine it starts from .gpu/study/NAME.sqlite.gz, the block's database as the last
#    call left it (carried with .gpu: the device machine keeps nothing, and the runs are paid in
#    GPU time; study/README.md), else from nothing.
# The sweep is stopped by SIGTERM at WALL seconds: its runs save their states and go back to
# planned (docs/sweep-faults.md), so the next call resumes them where they stopped.
#   run: OUT=$OUT SPEC=examples/paper-a-h100.toml NAME=paper-a-h100 ENSEMBLE=7 SHARD=0/12 WALL=480 \
#        scripts/gpu-study.sh                                        (carry [".gpu"])
#   then: scripts/gpu-study-fetch.sh FILES_AT NAME (.gpu/study/NAME.sqlite.gz and results/study/NAME.sqlite)
# Output ($OUT): NAME.sqlite.gz.partNN (the whole database, gzipped, in 15 MiB parts: the device
# tool brings back files of at most 16 MiB), NAME-logs.tgz (build, sweep log, runs JSON) and,
# after a build, lazyfeat-HASH.gz (the binary of these sources, carried back in .gpu/bin/).
# It prints the member-steps the call advanced the block by, and their rate over the sweep's wall
# time (docs/benchmarks.md's rows of the study).
# DROP_STATES=1 first deletes the saved states of the runs that ended (their trained weights: not
# needed by the report; kept otherwise), so that a finished block travels small.
# The exported copy keeps every checkpoint of a run's first 2,000 steps, then the last one of each
# 1,000 steps (a run's last checkpoint among them): the protocol's ~100-step spacing is ~3,400
# rows a run, which would take the databases past what the device tool carries (64 MiB
# with .gpu) within a block (study/README.md). FULL_CHECKPOINTS=1 keeps them all.
# The states of the runs in flight travel too, the furthest first, up to STATE_MB megabytes
# (default 36); the others are dropped and start again (21 states of h = 400, L = 2 are 85 MB).
# WALL must leave a minute for this export within the device call's limit (LIMIT, default 600 s,
# the device tool's timeout_s): the sweep is stopped at WALL seconds, then the export and the gzip
# take 20-60 s, and a call stopped by the limit brings nothing back. A larger WALL is refused.
# Deliberately not: the tests, the benchmarks (scripts/gpu-check.sh).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=${OUT:-/tmp/gpu-study}
spec=${SPEC:?SPEC=examples/....toml}
name=${NAME:?NAME=the block name}
wall=${WALL:-480}
limit=${LIMIT:-600}
if [ "$wall" -gt $((limit - 60)) ]; then
  echo "gpu-study.sh: WALL=$wall leaves under a minute of the call's LIMIT=$limit s for the export: at most $((limit - 60))" >&2
  exit 2
fi
ens=${ENSEMBLE:-1}
build=${BUILD:-$root/build-gpu}
logs=$dest/$name-logs; mkdir -p "$logs"
trap 'tar czf "$dest/$name-logs.tgz" -C "$logs" . && rm -rf "$logs"' EXIT
mkdir -p "$root/data/mnist" "$build/study"
for f in "$root"/.gpu/mnist/*.gz; do
  t="$root/data/mnist/$(basename "$f" .gz)"
  [ -e "$f" ] && [ ! -s "$t" ] && gunzip -c "$f" > "$t"
done
SECONDS=0
export LD_LIBRARY_PATH=$root/.gpu/lib:${LD_LIBRARY_PATH:-}
# The binary of these sources, when an earlier call built it and it travelled back
# (.gpu/bin/lazyfeat-HASH.gz, by scripts/gpu-study-fetch.sh): a fresh machine then skips the
# ~80 s build. HASH covers every file under src/ and CMakeLists.txt (all that the lazyfeat
# target is built from, with .gpu/include), so any change to them builds again; a binary that
# does not start here (another PyTorch) is built again too.
# A binary left on a warm machine by an earlier call is used only if it was built from these
# sources (BUILD/lazyfeat.srchash, written by scripts/gpu-build.sh).
srchash=$("$root/scripts/gpu-build.sh" --hash)
carried=$root/.gpu/bin/lazyfeat-$srchash.gz
if [ -x "$build/lazyfeat" ] && [ "$(cat "$build/lazyfeat.srchash" 2>/dev/null)" != "$srchash" ]; then
  echo "build: the binary here is of other sources"; rm -f "$build/lazyfeat"
fi
came_carried=
if [ ! -x "$build/lazyfeat" ] && [ -z "${REBUILD:-}" ] && [ -s "$carried" ]; then
  mkdir -p "$build" && gunzip -c "$carried" > "$build/lazyfeat" && chmod +x "$build/lazyfeat"
  if "$build/lazyfeat" --version > /dev/null 2>&1; then
    came_carried=1
    echo "$srchash" > "$build/lazyfeat.srchash"; echo "build: none, the carried binary of these sources ($srchash)"
  else rm -f "$build/lazyfeat"; echo "build: the carried binary does not start here; building"; fi
fi
if [ ! -x "$build/lazyfeat" ] || [ -n "${REBUILD:-}" ]; then
  TARGET=lazyfeat "$root/scripts/gpu-build.sh" "$build" > "$logs/build.log" 2>&1 || { tail -50 "$logs/build.log"; exit 1; }
  echo "build: ${SECONDS} s"
fi
# The binary goes back with the database, for the next call's fresh machine, unless it came
# carried: built just now, or by an earlier script of this call (scripts/gpu-check.sh) or an
# earlier call on this warm machine, of these sources either way.
[ -z "$came_carried" ] && gzip -c "$build/lazyfeat" > "$dest/lazyfeat-$srchash.gz"
lf=$build/lazyfeat
db=$build/study/$name.sqlite
if [ ! -s "$db" ] && [ -s "$root/.gpu/study/$name.sqlite.gz" ]; then
  gunzip -c "$root/.gpu/study/$name.sqlite.gz" > "$db" && echo "database: from .gpu/study/$name.sqlite.gz"
elif [ -s "$db" ]; then
  echo "database: kept on this machine"
else
  echo "database: new"
fi
# The study's progress in member-steps: the steps of the ended runs and the saved states' steps
# of those in flight (a state's step is its last checkpoint's: a few steps early at most).
progress() {
  [ -s "$db" ] || { echo 0; return; }
  python3 - "$db" <<'EOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
ended = "('converged', 'diverged', 'stopped')"
done = c.execute("select coalesce(sum(steps), 0) from runs where status in " + ended).fetchone()[0]
flight = c.execute("select coalesce(sum(s.step), 0) from states s join runs r on r.id = s.run_id "
                   "where r.status not in " + ended).fetchone()[0]
print(done + flight)
EOF
}
left=$(( wall - SECONDS ))
if [ "$left" -gt 30 ]; then
  before=$(progress); t0=$SECONDS
  OMP_NUM_THREADS=8 timeout -s TERM -k 120 "$left" "$lf" sweep "$root/$spec" --db "$db" --ensemble "$ens" \
    ${SHARD:+--shard "$SHARD"} --state-every 60 --json > "$logs/sweep.json" 2> "$logs/sweep.log"
  echo "sweep exit $? after ${SECONDS} s; $(tr '\r' '\n' < "$logs/sweep.log" | grep -v '^$' | tail -2 | head -c 600)"
  steps=$(( $(progress) - before )); secs=$(( SECONDS - t0 > 0 ? SECONDS - t0 : 1 ))
  echo "member-steps this call: $steps in $secs s of sweep: $(( steps / secs )) member-steps/s"
fi
"$lf" runs --db "$db" --json > "$logs/runs.json" 2>&1
python3 - "$db" <<'EOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print("runs by status:", dict(c.execute("select status, count(*) from runs group by status").fetchall()))
for r in c.execute("select id, seed_init, alpha, status, steps, t, test_err, kernel_change, steps_per_s, wall_s "
                   "from runs where status != 'planned' or steps > 0 order by id"):
    print("  ", r)
for r in c.execute("select r.id, s.step, s.t from states s join runs r on r.id = s.run_id where r.status = 'planned'"):
    print("   state of planned run", r)
EOF
out=$build/study/$name.export.sqlite
rm -f "$out"
python3 - "$db" "$out" "${DROP_STATES:-}" "${FULL_CHECKPOINTS:-}" "${STATE_MB:-36}" <<'EOF'
import sqlite3, sys
src, dst, drop, full, state_mb = sys.argv[1:6]
c = sqlite3.connect(src)
c.execute("vacuum into ?", (dst,))
c.close()
d = sqlite3.connect(dst)
if drop:
    d.execute("delete from states where run_id in (select id from runs where status in ('converged', 'diverged', 'stopped'))")
# The saved states of the runs in flight, the furthest first, while they fit in STATE_MB: a state
# is random float64 bits that gzip does not shrink, and the device tool brings back at most ~60 MB
# (and carries 64 MiB with .gpu). A run whose state is dropped starts again from step 0 there.
left = float(state_mb) * 1e6
for run_id, step, size in d.execute("select run_id, step, length(blob) from states order by step desc, run_id").fetchall():
    if size <= left:
        left -= size
    else:
        d.execute("delete from states where run_id = ?", (run_id,))
        print(f"state of run {run_id} (step {step}) dropped: past STATE_MB = {state_mb}")
if not full:
    d.execute("delete from checkpoints where step > 2000 and step < (select max(c.step) from checkpoints c "
              "where c.run_id = checkpoints.run_id and c.step / 1000 = checkpoints.step / 1000)")
d.commit()
d.execute("vacuum")
d.close()
EOF
gzip -c "$out" | split -b 15M -d - "$dest/$name.sqlite.gz.part"
ls -l "$dest" | grep "$name"
echo "total: ${SECONDS} s"
