#!/usr/bin/env bash
# Builds the runtime image from a release binary and checks it from outside, against the host's
# PostgreSQL: readiness, the bootstrap credential in the volume and not in the log, a token from
# the HTTP token endpoint, the JWKS, the non-root user, the read-only root filesystem, and a
# SIGTERM that exits 0 within the grace.
# Usage: deploy/test.sh <tokenmint release binary>
# Needs podman, runc and debootstrap (apt-get install -y podman runc debootstrap); skips with a
# message when podman is missing. The Debian base image is made once with debootstrap (no
# registry needed) and kept as docker.io/library/debian:bookworm-slim, so later runs reuse it.
set -euo pipefail
binary=${1:?usage: deploy/test.sh <tokenmint release binary>}
cd "$(dirname "$0")/.."
if ! command -v podman >/dev/null; then
  echo "SKIPPED: podman is not installed (apt-get install -y podman runc debootstrap)"
  exit 0
fi
pg=${PGURL:-postgres://postgres@127.0.0.1:5432}
db=tm_deploy
name=tokenmint-deploy-test
volume=tokenmint-deploy-test
# Two distinct ports free now (the host network is shared with whatever else runs here).
read -r grpc_port http_port < <(python3 -c '
import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')
grpc=127.0.0.1:$grpc_port http=127.0.0.1:$http_port
podman() { command podman --runtime runc "$@"; }
fail() { echo "FAIL: $*" >&2; podman logs "$name" 2>&1 | tail -20 >&2 || true; exit 1; }
cleanup() {
  podman rm -f "$name" >/dev/null 2>&1 || true
  podman volume rm -f "$volume" >/dev/null 2>&1 || true
  psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  rm -rf "${ctx:-}"
}
trap cleanup EXIT

# rlimits cannot be set in some sandboxes; the server raises its own soft limit at start.
if [ ! -f /etc/containers/containers.conf ]; then
  mkdir -p /etc/containers && printf '[containers]\ndefault_ulimits = []\n' > /etc/containers/containers.conf
fi
base=docker.io/library/debian:bookworm-slim
if ! podman image exists "$base"; then
  rootfs=/var/tmp/tokenmint-rootfs
  [ -d "$rootfs/usr" ] || debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
  tar -C "$rootfs" -c . | podman import - "$base" >/dev/null
fi
ctx=$(mktemp -d)
cp "$binary" "$ctx/tokenmint"
podman build -q --network host -f deploy/Dockerfile --target prebuilt --build-arg BINARY=tokenmint \
  -t localhost/tokenmint:test "$ctx" >/dev/null

psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
podman rm -f "$name" >/dev/null 2>&1 || true
podman volume rm -f "$volume" >/dev/null 2>&1 || true
podman volume create "$volume" >/dev/null
podman run -d --name "$name" --network host --read-only -v "$volume:/var/lib/tokenmint" \
  -e TOKENMINT_DATABASE_URL="$pg/$db" -e TOKENMINT_GRPC_ADDR="$grpc" -e TOKENMINT_HTTP_ADDR="$http" \
  -e TOKENMINT_SHUTDOWN_GRACE=10s -e TOKENMINT_DRAIN_DELAY=1s \
  localhost/tokenmint:test >/dev/null

for _ in $(seq 100); do curl -sf "http://$http/readyz" >/dev/null && break; sleep 0.2; done
curl -sf "http://$http/readyz" >/dev/null || fail "/readyz never answered 200"
echo "ok: ready"

data=$(podman volume inspect "$volume" --format '{{.Mountpoint}}')
credential="$data/bootstrap-credential.json"
[ -f "$credential" ] || fail "no bootstrap credential in the volume"
[ "$(stat -c '%a %u' "$credential")" = "600 10001" ] || fail "credential file is $(stat -c '%a %u' "$credential")"
secret=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['secret'])" "$credential")
key_id=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['key_id'])" "$credential")
podman logs "$name" 2>&1 | grep -qF "$secret" && fail "the bootstrap secret is in the log"
echo "ok: bootstrap credential in the volume (0600, uid 10001), not in the log"

token=$(curl -sf -u "$key_id:$secret" -d grant_type=client_credentials "http://$http/oauth2/token" \
  | python3 -c "import json,sys; print(json.load(sys.stdin)['access_token'])") || fail "no token"
[ -n "$token" ] || fail "empty token"
curl -sf "http://$http/.well-known/jwks.json" | grep -q '"keys"' || fail "no JWKS"
echo "ok: a token from the token endpoint, and the JWKS"

[ "$(podman exec "$name" /usr/bin/id -u)" = 10001 ] || fail "not running as uid 10001"
podman exec "$name" /usr/bin/touch /probe 2>/dev/null && fail "the root filesystem is writable"
echo "ok: uid 10001, read-only root filesystem"

start=$(date +%s)
podman stop -t 30 "$name" >/dev/null
took=$(( $(date +%s) - start ))
code=$(podman inspect "$name" --format '{{.State.ExitCode}}')
[ "$code" = 0 ] || fail "exit status $code after SIGTERM"
[ "$took" -le 10 ] || fail "stopping took ${took}s, more than the 10 s grace"
podman logs "$name" 2>&1 | grep -q '"stopped"' || fail "no clean stop in the log"
echo "ok: SIGTERM: exit 0 in ${took}s (grace 10 s, drain delay 1 s)"
echo "PASS"
