#!/usr/bin/env bash
# The HTTP token endpoint under h2load over HTTP/1.1 keep-alive, with the options of the
# oidc-provider peer (../shared/peers/oidc-provider/run.sh): one h2load thread, 64 connections,
# 3 s warm-up, then the given seconds; client credentials by HTTP Basic. Prints tokens/s.
# Usage: crates/bench/http-token.sh <tokenmint binary> [CONNECTIONS=64] [SECONDS=10]
set -euo pipefail
bin=${1:?usage: http-token.sh <tokenmint binary> [connections] [seconds]}
conns=${2:-64}; secs=${3:-10}
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
cred=$("$bin" --log-level warn bootstrap --json --data-dir "$work/data")
"$bin" --log-level warn serve --data-dir "$work/data" --grpc-addr 127.0.0.1:50691 --http-addr 127.0.0.1:18691 &
server=$!
sleep 2
key_id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["key_id"])' "$cred")
secret=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["secret"])' "$cred")
printf 'grant_type=client_credentials&scope=owner&resource=https%%3A%%2F%%2Fapi.example.com' > "$work/body"
auth="Basic $(printf '%s:%s' "$key_id" "$secret" | base64 -w0)"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: $auth" --data-binary @"$work/body" \
  -H 'content-type: application/x-www-form-urlencoded' http://127.0.0.1:18691/oauth2/token)
[ "$code" = 200 ] || { echo "tokenmint answered HTTP $code, not 200" >&2; exit 1; }
h2load --h1 -t 1 -c "$conns" -D "$secs" --warm-up-time=3 -d "$work/body" -H "authorization: $auth" \
  -H 'content-type: application/x-www-form-urlencoded' http://127.0.0.1:18691/oauth2/token 2>&1 |
  awk '/^finished in/ {gsub(",","",$4); r=$4} /^status codes:/ {s=$0}
       END {printf "tokenmint /oauth2/token: %s tokens/s (%s)\n", r, s}'
