#!/bin/bash
# Steady state for the 'split' schema: prefilled with $PREFILL orders (orders_cust filled too), fresh copy per 10-s run.
cd /tmp/floor; P=${PREFILL:-4000000}
PREFILL=$P python3 prep.py split /tmp/floor/pre-split >/dev/null
for r in 1 2; do for m in ${MERGES:-200000 1000000}; do
  rm -rf st && mkdir st && cp pre-split/rebuy.db st/
  (cd st && LABEL=split$m-pre$P SECS=10 MERGE=$m python3 ../floor.py) | sed "s/^/r$r /"
done; done
rm -rf st pre-split
