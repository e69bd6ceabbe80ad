#!/bin/bash
# Usage: runall.sh VARIANTS_FILE ROUNDS LOGFILE — each round runs every variant once (in file order,
# baseline interleaved by listing it more than once), each on a fresh copy of the base db, SECS=10.
cd /tmp/floor
for r in $(seq $2); do
  while read -r label schema envs; do
    [ -z "$label" ] && continue
    python3 prep.py $schema /tmp/floor/run-$$ >/dev/null
    (cd /tmp/floor/run-$$ && env LABEL=$label SECS=${SECS:-10} $envs python3 ../floor.py) 2>&1 | sed "s/^/r$r /" >> $3
    rm -f /tmp/floor/run-$$/*
  done < $1
done
