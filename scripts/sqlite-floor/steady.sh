#!/bin/bash
# Steady state: base and narrow3 databases prefilled with $PREFILL orders (prep.py PREFILL), copied fresh for each
# 10-s run; alternates base (as is) and n3c60s (narrow3, 60k commits, sorted by customer).
cd /tmp/floor; P=${PREFILL:-4000000}
for s in base narrow3; do PREFILL=$P python3 prep.py $s /tmp/floor/pre-$s >/dev/null; ls -la /tmp/floor/pre-$s; done
for r in 1 2; do
  for v in "base base" "n3c60s narrow3 COMMIT=60000 SORT=cust"; do
    set -- $v; label=$1; s=$2; shift 2
    rm -rf /tmp/floor/st && mkdir /tmp/floor/st && cp /tmp/floor/pre-$s/rebuy.db /tmp/floor/st/
    (cd /tmp/floor/st && env LABEL=$label-pre$P SECS=10 "$@" python3 ../floor.py) | sed "s/^/r$r /"
  done
done
rm -rf /tmp/floor/st /tmp/floor/pre-*
