#!/bin/sh
# Makes the secrets deploy/compose.yaml mounts, once: a key-encryption key and a secret pepper
# that every replica shares, and the database password with the URL that carries it.
# Usage: deploy/compose-secrets.sh [directory]   (default: deploy/secrets)
# The directory is private to its owner (0700); the files in it are readable (0444) because
# compose bind-mounts them as they are and the containers run as other users (tokenmint as
# 10001, PostgreSQL as its own). An existing file is never overwritten: replacing the
# key-encryption key would make the stored signing keys unreadable.
set -eu
dir=${1:-"$(dirname "$0")/secrets"}
mkdir -p "$dir"
chmod 0700 "$dir"
umask 0222
random() { head -c "$1" /dev/urandom | base64 | tr -d '\n'; }
[ -e "$dir/key-encryption-key" ] || random 32 > "$dir/key-encryption-key"
[ -e "$dir/secret-pepper" ] || random 32 > "$dir/secret-pepper"
if [ ! -e "$dir/database-password" ]; then
  password=$(random 24 | tr '+/' '-_')
  printf '%s' "$password" > "$dir/database-password"
  printf 'postgres://tokenmint:%s@postgres:5432/tokenmint' "$password" > "$dir/database-url"
fi
echo "secrets in $dir"
