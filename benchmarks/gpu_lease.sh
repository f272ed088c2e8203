#!/usr/bin/env bash
# The measurements a GPU lease should make next, in one command of about
# six minutes (docs/benchmarks.md, "2026-12-04: the first GPU runs"):
#
#   1. W1 at C = 1000 with 32 lanes and the default widths, profiled, as the
#      baseline of this lease;
#   2. the same with each XLA flag that may keep a while loop on the device
#      (one trace showed 1.67 device-to-host copies per update, about one
#      per loop iteration; by its kernel time these flags can give at most
#      about 1.2x);
#   3. the 16- and 64-member sweeps (vmap members now loop over all of a
#      step's arrival positions);
#   4. the float64 exactness tests of the executor on the GPU.
#
# Everything lands in $OUT/lease.tgz (one file comes back through the
# device tool's limits), with a short table printed last.
#
# On the device machine, from the repository root, with MNIST copied into
# an ignored .data/ folder and carried:
#   OUT=<folder> bash benchmarks/gpu_lease.sh
# A dry run on a CPU, in a minute or two (generated data, tiny cases):
#   OUT=$(mktemp -d) SMOKE=1 bash benchmarks/gpu_lease.sh
set -u
out=${OUT:?set OUT to the folder for the results}
data=${DATA:-.data/mnist.npz}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
mkdir -p "$out/lease"
if [ -n "${SMOKE:-}" ]; then
  size="--smoke"; cases=""
  tests_k="matches_reference_float64 and fedasync-constant"
else
  size="--data $data"; cases="--concurrency 1000 --widths 32"
  tests_k="matches_reference or lane_machine"
fi
w1="--only w1 $cases --budget-s 60 --profile $size"

run() {  # run NAME SECONDS ENV... -- ARGS...: one gpu.py run, logged
  local name=$1 limit=$2; shift 2
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  mkdir -p "$out/lease/$name"
  env "${envs[@]}" timeout "$limit" python3 benchmarks/gpu.py "$@" \
    --out "$out/lease/$name" > /dev/null 2> "$out/lease/$name.log"
  echo "$name: exit $?"
}

run base 150 -- $w1
run command_buffer 150 \
  "XLA_FLAGS=--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL" -- $w1
run unroll 150 \
  "XLA_FLAGS=--xla_gpu_enable_while_loop_unrolling=WHILE_LOOP_UNROLLING_AUTO_UNROLL" \
  -- $w1
run sweeps 200 -- --only sweeps --budget-s 150 $size
timeout 150 python3 -m pytest -q -p no:cacheprovider --durations=0 \
  tests/test_executor.py tests/test_lanes.py -k "$tests_k" \
  > "$out/lease/tests.log" 2>&1
echo "tests: exit $? ($(grep -E 'passed|failed' "$out/lease/tests.log" | tail -1))"

(cd "$out" && tar czf lease.tgz lease)
python3 - "$out/lease" <<'EOF'
import glob, json, sys
for path in sorted(glob.glob(f"{sys.argv[1]}/*/gpu_*.json")):
  r = json.load(open(path))
  name = path.split("/")[-2]
  for c in r.get("w1", []):
    print(f"{name:15s} {c['case']:32s} {c['steady_updates_per_s'] or 0:9.0f} "
          f"updates/s steady, compile {c['compile_s'] or 0:.1f} s")
  p = r.get("profile") or {}
  if p:
    print(f"{name:15s} profile: busy {p.get('device_busy_share_of_span')}"
          f" of span, {p.get('device_to_host_per_update')} copies/update")
  for s in r.get("sweeps", []):
    print(f"{name:15s} {s['case']}: vmap {s.get('vmap_s')} s, map "
          f"{s.get('map_s')} s, separate {s.get('separate_s_extrapolated')} s")
  if r.get("errors"):
    print(f"{name:15s} errors: {r['errors']}")
EOF
