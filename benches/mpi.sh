#!/usr/bin/env bash
# 2 ranks x 1 thread (mpirun) against 1 rank x 2 threads, on the 2-core
# machine, for (1) a faces cross-validation (part 8's MLP, 4 data seeds,
# shared out over the ranks) and (2) AlexNet trained end to end, data-parallel
# (part10_finetune's settings, 12 Adam steps of batch 32).
# Prints `bench=mpi case=.. impl=.. value=.. unit=s` lines: wall seconds of
# the whole run (data loading and the evaluations included, the same work in
# both modes), median of ROUNDS (default 3) alternating rounds. Needs Open MPI
# and the faces crops (README, "Faces").
#
#   cargo build --release --features mpi && benches/mpi.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/nabla
command -v mpirun >/dev/null || { echo "benches/mpi.sh: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)" >&2; exit 1; }
[ -x "$bin" ] || { echo "benches/mpi.sh: build first: cargo build --release --features mpi" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# (1) part 8's MLP and schedule, shortened (1 epoch of 6 x 500 steps), 4 seeds.
sed -e '/^\[\[trials\]\]/,/^$/d' -e 's/^epochs = 5/epochs = 1/' -e 's/^steps_per_batch = 1000/steps_per_batch = 500/' \
    -e 's/^checkpoint_every = .*/checkpoint_every = 0/' -e 's/^name = "part8"/name = "bench_crossval"/' \
    pipelines/part8.toml > "$tmp/crossval.toml"
# (2) AlexNet end to end, data-parallel: 12 steps of 32, evaluated at the start and the end.
sed -e 's/^epochs = 15/iterations = 12\neval_every = 1000/' -e 's/^checkpoint_every = .*/checkpoint_every = 0/' \
    -e 's/^name = "part10_finetune"/name = "bench_alexnet"/' -e 's/^\[train\]/[train]\nparallel = "data"/' \
    pipelines/part10_finetune.toml > "$tmp/alexnet.toml"
"$bin" check "$tmp/crossval.toml" "$tmp/alexnet.toml" >/dev/null

seconds() { # command... -> wall seconds
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
rounds=${ROUNDS:-3}
for case in crossval alexnet; do
    file="$tmp/$case.toml"
    : > "$tmp/one"; : > "$tmp/two"
    for _ in $(seq "$rounds"); do # alternate the modes so drift in the machine hits both
        seconds env RAYON_NUM_THREADS=2 "$bin" --quiet "$file" --out "$tmp/out1" >> "$tmp/one"
        seconds mpirun --allow-run-as-root --oversubscribe -np 2 -x RAYON_NUM_THREADS=1 --bind-to core \
            "$bin" --quiet "$file" --out "$tmp/out2" >> "$tmp/two"
    done
    one=$(median < "$tmp/one")
    two=$(median < "$tmp/two")
    printf 'bench=mpi case=%s impl=1rank-x-2threads value=%.2f unit=s\n' "$case" "$one"
    printf 'bench=mpi case=%s impl=2ranks-x-1thread value=%.2f unit=s\n' "$case" "$two"
    printf 'bench=mpi case=%s impl=ratio value=%.2f unit=x\n' "$case" "$(echo "$one / $two" | bc -l)"
done
