#!/usr/bin/env bash
# Exchange / empty-RPC ratio under h2load (nghttp2), an independent HTTP/2 load generator:
# 4 connections x 64 streams, one key, 3 alternating rounds of health check and ExchangeApiKey.
# Usage: crates/bench/h2load.sh <tokenmint binary> [postgres://… database URL]
# Needs h2load (apt-get install nghttp2-client) and python3.
set -euo pipefail
bin=${1:?usage: h2load.sh <tokenmint binary> [database url]}
db_url=${2:-}
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
args=(--data-dir "$work/data")
[ -n "$db_url" ] && args+=(--database-url "$db_url")
cred=$("$bin" --log-level warn bootstrap --json "${args[@]}")
"$bin" --log-level warn serve "${args[@]}" --grpc-addr 127.0.0.1:50591 --http-addr 127.0.0.1:18591 &
server=$!
sleep 2
python3 - "$cred" "$work" <<'PY'
import json, struct, sys
cred = json.loads(sys.argv[1]); out = sys.argv[2]
def field(number, text):
    data = text.encode()
    return bytes([number << 3 | 2, len(data)]) + data
message = field(1, cred["key_id"]) + field(2, cred["secret"])
open(f"{out}/exchange.bin", "wb").write(b"\0" + struct.pack(">I", len(message)) + message)
open(f"{out}/health.bin", "wb").write(b"\0\0\0\0\0")
PY
run() {  # path body -> requests per second
  h2load -c 4 -m 64 -t 2 -D 10 --warm-up-time 2 -d "$2" \
    -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:50591$1" 2>/dev/null | awk '/^finished in/ { gsub(",", "", $4); print $4 }
      /^requests:/ { print "requests: " $0 > "/dev/stderr" }'
}
for round in 1 2 3; do
  health=$(run /grpc.health.v1.Health/Check "$work/health.bin")
  exchange=$(run /tokenmint.auth.v1.AuthService/ExchangeApiKey "$work/exchange.bin")
  python3 -c "print(f'round $round: health {float(\"$health\"):.0f}/s exchange {float(\"$exchange\"):.0f}/s ratio {float(\"$exchange\")/float(\"$health\"):.3f}')"
done
