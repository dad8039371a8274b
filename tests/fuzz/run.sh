#!/bin/sh
# make fuzz: runs the fuzz target for SECONDS, seeded with the test fixtures.
# usage: tests/fuzz/run.sh FUZZER SECONDS DIR
# DIR/seeds is refilled each time (fixtures of at most 128 KiB, so iterations stay
# fast); DIR/corpus keeps what the fuzzer found across runs; crash, leak and
# timeout inputs are written to DIR/ as crash-*, leak-*, timeout-*.
set -eu
fuzzer=$1 seconds=$2 dir=$3
python3 tests/fixtures.py > /dev/null
rm -rf "$dir/seeds"
mkdir -p "$dir/seeds" "$dir/corpus"
dir=$(cd "$dir" && pwd) # the target works in a directory of its own
find "${LAYERSPLIT_FIXTURES:-build/fixtures}" -type f -size -129k ! -name STAMP -exec cp {} "$dir/seeds/" \;
echo "make fuzz: $(ls "$dir/seeds" | wc -l) seeds, $seconds s"
# Each iteration makes and removes directories: a tmpfs makes that cheap.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
	export TMPDIR=/dev/shm
fi
exec "$(cd "$(dirname "$fuzzer")" && pwd)/$(basename "$fuzzer")" -max_total_time="$seconds" -timeout=120 -rss_limit_mb=4096 \
	-max_len=262144 -print_final_stats=1 -artifact_prefix="$dir/" \
	"$dir/corpus" "$dir/seeds"
