#!/usr/bin/env bash
# Coverage-guided fuzzing of rebuy's parsers with AFL++ through cargo-afl (stable toolchain).
# Usage: scripts/fuzz.sh TARGET [SECONDS]   TARGET: scenario, segment, import, smtp_reply or all
# Builds the harnesses of fuzz/ (their own workspace), fuzzes each target for SECONDS (default
# 600) from fuzz/seeds/TARGET, with the dictionaries of fuzz/dict/, into target/fuzz-out/TARGET;
# prints the corpus size, executions, edges, crashes and hangs, and exits 1 if any target saved
# a crash. Installs cargo-afl if it is missing. A previous output folder is kept as
# target/fuzz-out/TARGET.prev. See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
targets=(scenario segment import smtp_reply)
what=${1:-}
secs=${2:-600}
case "$what" in
  all) run=("${targets[@]}") ;;
  scenario | segment | import | smtp_reply) run=("$what") ;;
  *)
    echo "usage: scripts/fuzz.sh {scenario|segment|import|smtp_reply|all} [SECONDS]" >&2
    exit 2
    ;;
esac

if ! cargo afl --version >/dev/null 2>&1; then
  cargo install cargo-afl --locked
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/fuzz}
out_root=$root/target/fuzz-out
# No CPU governor tuning, no terminal UI; a core_pattern that pipes to a crash reporter only
# delays crash detection, it does not hide crashes from AFL.
export AFL_SKIP_CPUFREQ=${AFL_SKIP_CPUFREQ:-1}
export AFL_NO_UI=${AFL_NO_UI:-1}
export AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=${AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES:-1}

echo "== building the harnesses (fuzz/, into $CARGO_TARGET_DIR)"
(cd fuzz && cargo afl build --release)

# A value of AFL's fuzzer_stats file, and the number of inputs saved in a findings folder.
field() { sed -n "s/^$1 *: *//p" "$stats"; }
saved() {
  local n=0 f
  for f in "$1"/id:*; do [ -e "$f" ] && n=$((n + 1)); done
  echo "$n"
}

crashed=0
for t in "${run[@]}"; do
  out=$out_root/$t
  bin=$CARGO_TARGET_DIR/release/$t
  if [ -e "$out" ]; then
    rm -rf "$out.prev"
    mv "$out" "$out.prev"
  fi
  mkdir -p "$out_root"
  echo "== fuzzing $t for ${secs}s: seeds fuzz/seeds/$t, output $out"
  dicts=(-x fuzz/dict/text.dict)
  if [ -f "fuzz/dict/$t.dict" ]; then dicts+=(-x "fuzz/dict/$t.dict"); fi
  # The import harness writes each input to a file in $TMPDIR; AFL kills the last processes
  # of a run before they can remove theirs.
  mkdir -p "$out_root/tmp"
  TMPDIR=$out_root/tmp cargo afl fuzz -V "$secs" "${dicts[@]}" -i "fuzz/seeds/$t" -o "$out" "$bin" \
    >"$out_root/$t.log" 2>&1 || {
    echo "afl-fuzz failed; the end of its log ($out_root/$t.log):" >&2
    tail -n 30 "$out_root/$t.log" >&2
    exit 1
  }
  rm -rf "$out_root/tmp"
  stats=$out/default/fuzzer_stats
  crashes=$(saved "$out/default/crashes")
  hangs=$(saved "$out/default/hangs")
  echo "$t: $(field run_time)s, $(field execs_done) execs" \
    "($(field execs_per_sec)/s), corpus $(field corpus_count)," \
    "edges $(field edges_found) of $(field total_edges)" \
    "($(field bitmap_cvg)), stability $(field stability)," \
    "crashes $crashes, hangs $hangs"
  if [ "$crashes" -gt 0 ]; then
    crashed=1
    echo "$t: crashes saved; reproduce one with: $bin < FILE" >&2
    ls "$out/default/crashes"/id:* >&2
  fi
  if [ "$hangs" -gt 0 ]; then
    echo "$t: hangs saved in $out/default/hangs" >&2
  fi
done
exit "$crashed"
