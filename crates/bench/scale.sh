#!/usr/bin/env bash
# The scale benchmark of docs/benchmarks.md, on one backend: the empty-RPC floor; exchanges of
# 1 key, of 10,000 keys (cache warm), of 1,000,000 keys with the cache holding them all and with
# the default cache of 100,000 (uniform, so mostly misses) beside a bare indexed lookup and the
# miss path's own lookup; list pages with 1,000 and 100,000 service users; on PostgreSQL also
# 3 replicas behind one client.
# Usage: crates/bench/scale.sh <release dir with tokenmint and tokenmint-bench> sqlite|postgres
# PostgreSQL: needs psql and a server at $PGURL (default postgres://postgres@127.0.0.1:5432);
# two databases are created and dropped. Takes about 15 minutes.
set -euo pipefail
bin=${1:?usage: scale.sh <release dir> sqlite|postgres}
backend=${2:?usage: scale.sh <release dir> sqlite|postgres}
pg=${PGURL:-postgres://postgres@127.0.0.1:5432}
duration=${DURATION:-10s}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$backend" = postgres ]; then
    for db in tm_scale_small tm_scale_large; do psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db" || true; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# prepare NAME USERS KEYS_PER_USER: a database with a bootstrap admin and the fixture.
prepare() {
  local name=$1 users=$2 per=$3 args=(--data-dir "$work/$1")
  if [ "$backend" = postgres ]; then
    psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS tm_scale_$name" -c "CREATE DATABASE tm_scale_$name"
    args+=(--database-url "$pg/tm_scale_$name")
  fi
  "$bin/tokenmint" --log-level warn bootstrap --json "${args[@]}" > "$work/$name.json"
  local org
  org=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['organization_id'])" "$work/$name.json")
  "$bin/tokenmint" --log-level warn bench-fixture "${args[@]}" --organization-id "$org" \
    --service-users "$users" --keys-per-user "$per" --out "$work/$name.keys"
}

# serve NAME PORT_OFFSET [flags…]: starts a server on the database NAME.
serve() {
  local name=$1 offset=$2; shift 2
  local args=(--data-dir "$work/$name")
  [ "$backend" = postgres ] && args+=(--database-url "$pg/tm_scale_$name")
  "$bin/tokenmint" --log-level warn serve "${args[@]}" --grpc-addr "127.0.0.1:$((50700 + offset))" \
    --http-addr "127.0.0.1:$((18700 + offset))" "$@" 2>>"$work/server.log" &
  pids+=($!)
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$((18700 + offset))/readyz" >/dev/null && return 0
    sleep 0.1
  done
  echo "server on $name did not become ready" >&2; cat "$work/server.log" >&2; return 1
}

stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}

bench() {  # label offset bench-args…
  local label=$1 offset=$2; shift 2
  echo "### $label"
  "$bin/tokenmint-bench" --target "http://127.0.0.1:$((50700 + offset))" --duration "$duration" \
    --metrics-url "http://127.0.0.1:$((18700 + offset))/metrics" "$@"
}

admin() {  # name -> exports the bootstrap key of NAME for tokenmint-bench
  export TOKENMINT_BENCH_KEY_ID TOKENMINT_BENCH_SECRET
  TOKENMINT_BENCH_KEY_ID=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['key_id'])" "$work/$1.json")
  TOKENMINT_BENCH_SECRET=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['secret'])" "$work/$1.json")
}

echo "## $backend on $(nproc) cores, $(date -u +%FT%TZ)"
echo "### fixtures"
prepare small 1000 10
prepare large 100000 10

serve small 0
admin small
# On empty calls a load generator of one thread is itself the limit: the floor takes two.
bench "empty RPC (health), the floor (load generator on 2 threads)" 0 --rpc health --threads 2
bench "empty RPC (health), load generator on 1 thread (the client's limit)" 0 --rpc health
bench "exchange, 1 key" 0
bench "exchange, 10,000 keys, cache warm" 0 --keys-file "$work/small.keys" --prewarm
bench "ListServiceUsers pages of 100, 1,000 users" 0 --rpc list-users --concurrency 16
stop_all

if [ "$backend" = postgres ]; then
  lookup_url="$pg/tm_scale_large"
else
  lookup_url="sqlite://$work/large/tokenmint.db?mode=ro"
fi
echo "### bare indexed lookup (SELECT id FROM api_keys WHERE id = ?), 1,000,000 keys"
"$bin/tokenmint-bench" --rpc db-lookup --duration "$duration" --database-url "$lookup_url" \
  --keys-file "$work/large.keys"
echo "### the exchange's miss lookup (key, user and role bindings, Store::find_exchange_key), 1,000,000 keys"
"$bin/tokenmint-bench" --rpc exchange-lookup --duration "$duration" --database-url "$lookup_url" \
  --keys-file "$work/large.keys"

serve large 1
admin large
bench "ListServiceUsers pages of 100, 100,000 users" 1 --rpc list-users --concurrency 16
bench "exchange, 1,000,000 keys, cache of 100,000 (uniform: mostly misses)" 1 --keys-file "$work/large.keys"
bench "exchange, 1,000,000 keys, cache of 100,000, Zipf s=1" 1 --keys-file "$work/large.keys" --choice zipf
stop_all

serve large 2 --key-cache-size 1100000 --key-cache-ttl 1h
bench "exchange, 1,000,000 keys, cache holding them all" 2 --keys-file "$work/large.keys" --prewarm
stop_all

if [ "$backend" = postgres ]; then
  serve small 3
  for r in 4 5; do
    mkdir -p "$work/small-$r" && cp "$work/small/secrets.json" "$work/small-$r/"
    "$bin/tokenmint" --log-level warn serve --data-dir "$work/small-$r" --database-url "$pg/tm_scale_small" \
      --grpc-addr "127.0.0.1:$((50700 + r))" --http-addr "127.0.0.1:$((18700 + r))" 2>>"$work/server.log" &
    pids+=($!)
  done
  sleep 3
  echo "### 3 replicas on one PostgreSQL, one client spreading connections, 10,000 keys"
  "$bin/tokenmint-bench" --target http://127.0.0.1:50703,http://127.0.0.1:50704,http://127.0.0.1:50705 \
    --channels 6 --duration "$duration" --keys-file "$work/small.keys" --prewarm
  echo "### PostgreSQL query plan of a ListServiceUsers page deep in 100,000 users"
  org=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['organization_id'])" "$work/large.json")
  after=$(psql -tA "$pg/tm_scale_large" -c "SELECT id FROM service_users WHERE organization_id = '$org' ORDER BY id OFFSET 90000 LIMIT 1")
  psql "$pg/tm_scale_large" -c "EXPLAIN ANALYZE SELECT * FROM service_users WHERE organization_id = '$org' AND id > '$after' ORDER BY id LIMIT 101"
  user=$(psql -tA "$pg/tm_scale_large" -c "SELECT service_user_id FROM api_keys ORDER BY id OFFSET 500000 LIMIT 1")
  psql "$pg/tm_scale_large" -c "EXPLAIN ANALYZE SELECT * FROM api_keys WHERE service_user_id = '$user' ORDER BY id LIMIT 101"
  stop_all
fi
