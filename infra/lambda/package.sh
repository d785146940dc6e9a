#!/usr/bin/env bash
# Package the rce Lambda function: the locked dependencies for the Lambda Python
# runtime, the service's packages and the exec wrapper, in one zip.
#
#   infra/lambda/package.sh                       -> infra/lambda/.build/rce-lambda.zip
#   infra/lambda/package.sh s3://bucket/prefix/   also uploads it (aws CLI) and prints the key
#
# Then deploy infra/lambda/template.yaml with CodeS3Bucket/CodeS3Key (docs/deployment.md).
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON_VERSION=3.12   # the template's Runtime
build=infra/lambda/.build
rm -rf "$build"
mkdir -p "$build/task"
uv export --frozen --no-dev --no-emit-project --no-hashes -o "$build/requirements.txt" >/dev/null
uv pip install --quiet --target "$build/task" --python-version "$PYTHON_VERSION" \
  --python-platform x86_64-manylinux_2_28 --no-deps -r "$build/requirements.txt"
for dir in core handler runner storage; do
  tar -c --exclude='__pycache__' "$dir" | tar -x -C "$build/task"
done
cp infra/lambda/rce_lambda_env.py infra/lambda/rce-lambda-wrapper "$build/task/"
chmod 755 "$build/task/rce-lambda-wrapper"
(cd "$build/task" && find . -name '__pycache__' -prune -exec rm -rf {} + \
  && python3 -m zipfile -c ../rce-lambda.zip . >/dev/null)
zip="$build/rce-lambda.zip"
echo "==> $zip ($(du -h "$zip" | cut -f1))" >&2
if [ -n "${1:-}" ]; then
  key="${1%/}/rce-lambda-$(sha256sum "$zip" | cut -c1-16).zip"
  aws s3 cp "$zip" "$key" >&2
  echo "$key"
fi
