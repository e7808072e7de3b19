#!/usr/bin/env bash
# The soak of docs/reliability.md: one server on a fresh PostgreSQL database, its exchange
# capacity measured for 10 s, then `tokenmint-soak` at half that rate (exchanges, a tenth of
# them introspected, admin churn) for 10 minutes, reported per minute. Passes when nothing but
# the attack failed and p99, memory and open descriptors stayed flat.
# Usage: crates/bench/soak.sh <release dir with tokenmint, tokenmint-bench, tokenmint-soak>
#          [--duration 10m] [--interval 1m] [--attack]
# Needs psql and PostgreSQL at $PGURL (default postgres://postgres@127.0.0.1:5432).
set -euo pipefail
bin=${1:?usage: soak.sh <release dir> [--duration D] [--interval I] [--attack]}
shift
duration=10m interval=1m attack=()
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --interval) interval=$2; shift 2 ;;
    --attack) attack=(--attack); shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
pg=${PGURL:-postgres://postgres@127.0.0.1:5432}
db=tm_soak
work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db" || true
  rm -rf "$work"
}
trap cleanup EXIT

psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
args=(--data-dir "$work/data" --database-url "$pg/$db")
"$bin/tokenmint" --log-level warn bootstrap --json "${args[@]}" > "$work/admin.json"
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$work/admin.json" "$1"; }
export TOKENMINT_BENCH_KEY_ID TOKENMINT_BENCH_SECRET TOKENMINT_SOAK_KEY_ID TOKENMINT_SOAK_SECRET
TOKENMINT_BENCH_KEY_ID=$(field key_id) TOKENMINT_BENCH_SECRET=$(field secret)
TOKENMINT_SOAK_KEY_ID=$TOKENMINT_BENCH_KEY_ID TOKENMINT_SOAK_SECRET=$TOKENMINT_BENCH_SECRET

"$bin/tokenmint" --log-level warn serve "${args[@]}" --grpc-addr 127.0.0.1:50800 \
  --http-addr 127.0.0.1:18800 2>>"$work/server.log" &
pid=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:18800/readyz >/dev/null && break; sleep 0.1; done

echo "## soak on PostgreSQL, $(nproc) cores, $(date -u +%FT%TZ), ${attack[*]:-no attack}"
capacity=$("$bin/tokenmint-bench" --target http://127.0.0.1:50800 --duration 10s \
  | sed -n 's/.* rate=\([0-9]*\)\/s.*/\1/p')
if [ -z "$capacity" ] || [ "$capacity" -lt 100 ]; then
  echo "could not measure the server's capacity (got '${capacity}')" >&2; exit 1
fi
rate=$((capacity / 2))
echo "measured capacity ${capacity} exchanges/s; soaking at ${rate}/s for $duration"
status=0
"$bin/tokenmint-soak" --target http://127.0.0.1:50800 --metrics-url http://127.0.0.1:18800/metrics \
  --rate "$rate" --duration "$duration" --interval "$interval" "${attack[@]}" || status=$?
if grep -q ERROR "$work/server.log"; then
  grep ERROR "$work/server.log" | head -5
  echo "FAIL: the server logged errors (above)"
  status=1
fi
exit "$status"
