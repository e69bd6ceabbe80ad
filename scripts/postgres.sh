#!/usr/bin/env bash
# A PostgreSQL on loopback for the tests: prints its URL (a role that may create databases;
# each test makes a database of its own). It uses Debian's cluster (`pg_ctlcluster`, as on the
# CI machine, which has PostgreSQL 15 installed but not started), installing Debian's
# `postgresql` with apt-get first when there is none, starts it when it is down, and creates
# the role `rebuy` (password `rebuy`) when it is missing, and drops the databases earlier test
# runs left (`rebuy_test_*`). Needs root or sudo for those steps;
# nothing is changed when the cluster is up and the role exists.
set -euo pipefail
# Only the URL goes to standard output (the caller reads it): whatever pg_ctlcluster, apt-get or
# psql print (pg_ctlcluster prints its systemd warning there) goes to standard error.
exec 3>&1 1>&2

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi

if ! command -v pg_lsclusters >/dev/null 2>&1; then
  echo "postgres.sh: installing PostgreSQL for the PostgreSQL tests (apt-get)" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi

# The newest cluster Debian knows of (version, name, port, status).
read -r version cluster port status < <(pg_lsclusters --no-header | sort -k1,1n | tail -1 | awk '{print $1, $2, $3, $4}') || true
if [ -z "${version:-}" ]; then
  echo "postgres.sh: no PostgreSQL cluster; create one with pg_createcluster" >&2
  exit 1
fi
if [ "$status" != "online" ]; then
  echo "postgres.sh: starting PostgreSQL $version/$cluster on port $port" >&2
  # (fd 3 closed: the server would hold the caller's pipe open)
  $SUDO pg_ctlcluster "$version" "$cluster" start 3>&- || true
  # As root on a machine with systemd, pg_ctlcluster hands the start to systemctl, which may
  # ignore it (in a container, say): then start it without systemd.
  if ! pg_lsclusters --no-header "$version" "$cluster" | grep -q online; then
    echo "postgres.sh: starting it again without systemd" >&2
    $SUDO env _SYSTEMCTL_SKIP_REDIRECT=1 pg_ctlcluster "$version" "$cluster" start 3>&-
  fi
fi
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p "$port" && break
  sleep 1
done
if ! pg_isready -q -h 127.0.0.1 -p "$port"; then
  echo "postgres.sh: PostgreSQL $version/$cluster does not accept connections on 127.0.0.1:$port" >&2
  exit 1
fi

psql_admin() {
  if [ "$(id -u)" -eq 0 ]; then
    su postgres -c "psql -p $port -qtAc \"$1\""
  else
    sudo -u postgres psql -p "$port" -qtAc "$1"
  fi
}
if [ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname = 'rebuy'")" != "1" ]; then
  psql_admin "CREATE ROLE rebuy LOGIN CREATEDB PASSWORD 'rebuy'" >/dev/null
else
  psql_admin "ALTER ROLE rebuy LOGIN CREATEDB PASSWORD 'rebuy'" >/dev/null
fi
# The databases earlier test runs made (one per shop, named after the process).
for db in $(psql_admin "SELECT datname FROM pg_database WHERE datname LIKE 'rebuy_test_%'"); do
  psql_admin "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
done
echo "postgres://rebuy:rebuy@127.0.0.1:$port/postgres" >&3
