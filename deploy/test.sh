#!/usr/bin/env bash
# Runs deploy/ as an operator would and checks the result from outside. Two parts:
#  1. image: the runtime image alone, against the host's PostgreSQL: readiness, the bootstrap
#     credential in the volume and not in the log, a token from the HTTP token endpoint, the JWKS,
#     the non-root user, the read-only root filesystem, and a SIGTERM that exits 0 in the grace.
#  2. compose: deploy/compose.yaml under podman-compose, PostgreSQL and three replicas started
#     together on an empty database: all serve without a restart, exactly one organization and
#     one credential, one signing key, a key revoked through one replica refused by the others
#     at once, and a clean stop of all three.
# Usage: deploy/test.sh <tokenmint binary>
# Needs podman, runc and debootstrap (apt-get install -y podman runc debootstrap); skips with a
# message when podman is missing. Installs podman-compose (PyPI) where it is missing. The
# Debian base image is made once with debootstrap (no registry is needed) and kept as
# docker.io/library/debian:bookworm-slim; later runs reuse it and the images built on it.
set -euo pipefail
binary=${1:?usage: deploy/test.sh <tokenmint binary>}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if ! command -v podman >/dev/null; then
  echo "SKIPPED: podman is not installed (apt-get install -y podman runc debootstrap)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  # Rootful podman, volume ownership checks and the root-owned data directory need root.
  echo "SKIPPED: the deploy test runs as root (rootful podman); run it with sudo"
  exit 0
fi
pg=${PGURL:-postgres://postgres@127.0.0.1:5432}
db=tm_deploy
name=tokenmint-deploy-test
volume=tokenmint-deploy-test
project=tmdeploy
work=$(mktemp -d)
podman() { command podman --runtime runc "$@"; }
compose() { podman-compose -p "$project" -f "$work/compose.yaml" "$@"; }
fail() {
  echo "FAIL: $*" >&2
  podman logs "$name" 2>&1 | tail -20 >&2 || true
  [ -f "$work/compose.yaml" ] && compose logs 2>&1 | tail -40 >&2 || true
  exit 1
}
cleanup() {
  podman rm -f "$name" >/dev/null 2>&1 || true
  podman volume rm -f "$volume" >/dev/null 2>&1 || true
  [ -f "$work/compose.yaml" ] && compose down -v >/dev/null 2>&1 || true
  psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
# Free ports now (the host network is shared with whatever else runs here).
free_ports() {
  python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}
wait_ready() {
  for _ in $(seq 150); do curl -sf "http://$1/readyz" >/dev/null && return 0; sleep 0.2; done
  fail "/readyz at $1 never answered 200"
}

echo "== images"
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
mkdir "$work/context"
cp "$binary" "$work/context/tokenmint"
podman build -q --network host -f deploy/Dockerfile --target prebuilt --build-arg BINARY=tokenmint \
  -t localhost/tokenmint:test "$work/context" >/dev/null
# No registry: a stand-in for the official postgres image, from Debian's package (built once).
# Tagged by its sources' hash, so a changed Dockerfile or entrypoint is rebuilt.
postgres_image=localhost/tokenmint-test-postgres:$(cat deploy/test/* | sha256sum | cut -c1-12)
podman image exists "$postgres_image" ||
  podman build -q --network host -f deploy/test/postgres.Dockerfile -t "$postgres_image" deploy/test >/dev/null
echo "ok: localhost/tokenmint:test, $postgres_image"

echo "== image: one container on the host's PostgreSQL"
read -r grpc_port http_port < <(free_ports 2)
grpc=127.0.0.1:$grpc_port http=127.0.0.1:$http_port
psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
podman rm -f "$name" >/dev/null 2>&1 || true
podman volume rm -f "$volume" >/dev/null 2>&1 || true
podman volume create "$volume" >/dev/null
printf '%s/%s\n' "$pg" "$db" > "$work/database-url"
chmod 0444 "$work/database-url"
podman run -d --name "$name" --network host --read-only -v "$volume:/var/lib/tokenmint" \
  -v "$work/database-url:/run/secrets/database-url:ro" \
  -e TOKENMINT_DATABASE_URL_FILE=/run/secrets/database-url \
  -e TOKENMINT_GRPC_ADDR="$grpc" -e TOKENMINT_HTTP_ADDR="$http" \
  -e TOKENMINT_SHUTDOWN_GRACE=10s -e TOKENMINT_DRAIN_DELAY=1s \
  localhost/tokenmint:test >/dev/null
wait_ready "$http"
echo "ok: ready, with the database URL read from a file"

data=$(podman volume inspect "$volume" --format '{{.Mountpoint}}')
credential="$data/bootstrap-credential.json"
[ -f "$credential" ] || fail "no bootstrap credential in the volume"
[ "$(stat -c '%a %u' "$credential")" = "600 10001" ] || fail "credential file is $(stat -c '%a %u' "$credential")"
# As the README has the operator read it.
credential_json=$(podman exec "$name" cat /var/lib/tokenmint/bootstrap-credential.json)
secret=$(python3 -c "import json,sys; print(json.load(sys.stdin)['secret'])" <<<"$credential_json")
key_id=$(python3 -c "import json,sys; print(json.load(sys.stdin)['key_id'])" <<<"$credential_json")
grep -qF "$secret" <<<"$(podman logs "$name" 2>&1)" && fail "the bootstrap secret is in the log"
echo "ok: bootstrap credential in the volume (0600, uid 10001), not in the log"

token=$(curl -sf -u "$key_id:$secret" -d grant_type=client_credentials "http://$http/oauth2/token" \
  | python3 -c "import json,sys; print(json.load(sys.stdin)['access_token'])") || fail "no token"
[ -n "$token" ] || fail "empty token"
grep -q '"keys"' <<<"$(curl -sf "http://$http/.well-known/jwks.json")" || fail "no JWKS"
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
grep -q '"stopped"' <<<"$(podman logs "$name" 2>&1)" || fail "no clean stop in the log"
echo "ok: SIGTERM: exit 0 in ${took}s (grace 10 s, drain delay 1 s)"
podman rm -f "$name" >/dev/null

# A Kubernetes emptyDir is root's (2777 with an fsGroup), and the process has no capability to
# change its mode: the bootstrap must still hand over its credential.
psql -q "$pg/postgres" -c "DROP DATABASE $db" -c "CREATE DATABASE $db"
mkdir "$work/emptydir" && chown 0:10001 "$work/emptydir" && chmod 2777 "$work/emptydir"
podman run -d --name "$name" --network host --read-only --user 10001:10001 --cap-drop ALL \
  -v "$work/emptydir:/var/lib/tokenmint" -v "$work/database-url:/run/secrets/database-url:ro" \
  -e TOKENMINT_DATABASE_URL_FILE=/run/secrets/database-url \
  -e TOKENMINT_GRPC_ADDR="$grpc" -e TOKENMINT_HTTP_ADDR="$http" localhost/tokenmint:test >/dev/null
wait_ready "$http"
[ "$(stat -c '%a %u' "$work/emptydir/bootstrap-credential.json" 2>/dev/null)" = "600 10001" ] ||
  fail "no private credential in a data directory owned by root (an emptyDir)"
podman rm -f "$name" >/dev/null
echo "ok: a root-owned data directory (an emptyDir) still gets the credential, 0600"

echo "== compose: PostgreSQL and three replicas (deploy/compose.yaml)"
if ! command -v podman-compose >/dev/null; then
  # The linters' environment has it (deploy/lint.sh); make it here otherwise.
  tools=${DEPLOY_TOOLS_VENV:-${CARGO_TARGET_DIR:-$root/target}/deploy-tools-venv}
  [ -x "$tools/bin/podman-compose" ] || {
    python3 -m venv "$tools" && "$tools/bin/pip" install --quiet --disable-pip-version-check podman-compose==1.6.0
  }
  export PATH="$tools/bin:$PATH"
fi
# shellcheck source=tests/python-tools.sh
source "$root/tests/python-tools.sh"
# The file as shipped, beside secrets made by the script the README names.
cp deploy/compose.yaml "$work/compose.yaml"
deploy/compose-secrets.sh "$work/secrets" >/dev/null
[ "$(stat -c '%a' "$work/secrets")" = 700 ] || fail "the secrets directory is not private"
read -r g1 h1 g2 h2 g3 h3 < <(free_ports 6)
export TOKENMINT_IMAGE=localhost/tokenmint:test POSTGRES_IMAGE=$postgres_image \
  TOKENMINT_GRPC_PORT_1=$g1 TOKENMINT_HTTP_PORT_1=$h1 TOKENMINT_GRPC_PORT_2=$g2 \
  TOKENMINT_HTTP_PORT_2=$h2 TOKENMINT_GRPC_PORT_3=$g3 TOKENMINT_HTTP_PORT_3=$h3
compose down -v >/dev/null 2>&1 || true
compose up -d --no-build >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; fail "compose up"; }
for h in $h1 $h2 $h3; do wait_ready "127.0.0.1:$h"; done
echo "ok: three replicas ready"

replicas=(tokenmint-1 tokenmint-2 tokenmint-3)
for service in "${replicas[@]}"; do
  restarts=$(podman inspect "${project}_${service}_1" --format '{{.RestartCount}}')
  [ "$restarts" = 0 ] || fail "$service restarted $restarts times (crash loop)"
  logs=$(compose logs "$service" 2>&1)
  grep -q '"tokenmint failed"' <<<"$logs" && fail "$service failed once"
  grep -q 'postgres://' <<<"$logs" && fail "$service logged the database URL"
done
count() {
  compose exec -T postgres psql -U tokenmint -d tokenmint -tAc "SELECT count(*) FROM $1" | tr -d '\r'
}
[ "$(count organizations)" = 1 ] || fail "$(count organizations) organizations after the race"
[ "$(count service_users)" = 1 ] || fail "$(count service_users) service users after the race"
credential=$(compose exec -T tokenmint-1 cat /var/lib/tokenmint/bootstrap-credential.json) ||
  fail "no bootstrap credential in the shared volume"
key_id=$(echo "$credential" | "$python" -c "import json,sys; print(json.load(sys.stdin)['key_id'])")
secret=$(echo "$credential" | "$python" -c "import json,sys; print(json.load(sys.stdin)['secret'])")
for service in "${replicas[@]}"; do
  grep -qF "$secret" <<<"$(compose logs "$service" 2>&1)" && fail "the bootstrap secret is in $service's log"
done
echo "ok: no restart, one organization, one credential (in the volume, not in any log)"

jwks=$(curl -sf "http://127.0.0.1:$h1/.well-known/jwks.json")
for h in $h2 $h3; do
  [ "$(curl -sf "http://127.0.0.1:$h/.well-known/jwks.json")" = "$jwks" ] || fail "replicas publish different keys"
done
echo "ok: one JWKS on all three"

field() { "$python" -c "import json,sys; print(json.load(sys.stdin)$1)"; }
TOKEN=$("$grpcurl" -plaintext -d "{\"key_id\":\"$key_id\",\"secret\":\"$secret\"}" \
  "127.0.0.1:$g1" tokenmint.auth.v1.AuthService/ExchangeApiKey | field "['accessToken']")
user=$("$grpcurl" -plaintext -H "authorization: Bearer $TOKEN" \
  -d '{"service_user":{"name":"compose-test"},"role_bindings":[{"role":"VIEWER"}]}' \
  "127.0.0.1:$g1" tokenmint.admin.v1.AdminService/CreateServiceUser | field "['id']")
created=$("$grpcurl" -plaintext -H "authorization: Bearer $TOKEN" \
  -d "{\"service_user_id\":\"$user\",\"name\":\"main\",\"expires_in\":\"86400s\"}" \
  "127.0.0.1:$g1" tokenmint.admin.v1.AdminService/CreateApiKey)
ci_key=$(echo "$created" | field "['apiKey']['id']")
ci_secret=$(echo "$created" | field "['secret']")
exchange() {
  curl -s -o /dev/null -w '%{http_code}' -u "$ci_key:$ci_secret" -d grant_type=client_credentials \
    "http://127.0.0.1:$1/oauth2/token"
}
# Exchanged once on each of the others first, so their caches hold the key.
for h in $h2 $h3; do [ "$(exchange "$h")" = 200 ] || fail "a key made on replica 1 does not exchange on :$h"; done
"$grpcurl" -plaintext -H "authorization: Bearer $TOKEN" -d "{\"id\":\"$ci_key\",\"reason\":\"compose test\"}" \
  "127.0.0.1:$g1" tokenmint.admin.v1.AdminService/RevokeApiKey >/dev/null
revoked=$(date +%s%N)
for h in $h2 $h3; do
  for _ in $(seq 20); do [ "$(exchange "$h")" != 200 ] && break; sleep 0.05; done
  [ "$(exchange "$h")" != 200 ] || fail "replica on :$h still exchanges a key revoked through replica 1"
done
took_ms=$(( ($(date +%s%N) - revoked) / 1000000 ))
[ "$took_ms" -le 1000 ] || fail "the revocation took ${took_ms} ms to reach the others"
echo "ok: a key revoked through replica 1 is refused by replicas 2 and 3 (both within ${took_ms} ms)"

compose stop >/dev/null 2>&1
for service in "${replicas[@]}"; do
  code=$(podman inspect "${project}_${service}_1" --format '{{.State.ExitCode}}')
  [ "$code" = 0 ] || fail "$service exited $code on stop"
done
echo "ok: all three stop cleanly (exit 0)"
echo "PASS"
