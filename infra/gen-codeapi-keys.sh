#!/usr/bin/env bash
# Make the Ed25519 key pair LibreChat signs its Code API tokens with.
#
#   infra/gen-codeapi-keys.sh [KID]
#
# Writes infra/keys/private/codeapi-private.pem (0600, for LibreChat only) and
# infra/keys/public/codeapi-public.pem (mounted into the API at /run/rce/keys), then
# prints the lines to add to infra/.env. Refuses to overwrite an existing pair.
set -euo pipefail
cd "$(dirname "$0")/keys"
kid="${1:-lc-codeapi-2026-05}"
private=private/codeapi-private.pem
public=public/codeapi-public.pem
if [ -e "$private" ]; then
  echo "error: $PWD/$private exists; remove it first to make a new pair" >&2
  exit 1
fi
mkdir -p private public
chmod 700 private
(umask 077 && openssl genpkey -algorithm ed25519 -out "$private")
openssl pkey -in "$private" -pubout -out "$public"
chmod 644 "$public"
echo "# add to infra/.env:"
echo "RCE_AUTH_MODE=both"
echo "RCE_JWT_PUBLIC_KEY_FILE=/run/rce/keys/codeapi-public.pem"
echo "CODEAPI_JWT_KID=$kid"
echo "CODEAPI_JWT_PRIVATE_KEY_BASE64=$(base64 -w0 "$private")"
