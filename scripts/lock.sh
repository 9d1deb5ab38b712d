#!/usr/bin/env bash
# Dependencies you can vet: the service's (torch-free) install locked with hashes, and a CycloneDX SBOM of it.
#
#   bash scripts/lock.sh lock   # requirements/service.lock: every package `pip install pneumo` brings, pinned, with
#                               # the SHA-256 of each of its files (pip-compile --generate-hashes; needs an index)
#   bash scripts/lock.sh sbom   # build/sbom/pneumo-VERSION.cdx.json: a fresh venv installed from build/wheelhouse/
#                               # with --no-index (run `bash scripts/build_image.sh wheelhouse` first), described
#                               # by cyclonedx-py from its installed metadata; nothing is fetched
#   bash scripts/lock.sh        # both
#
# The tools (pip-tools, cyclonedx-bom, pinned below) live in their own venv, build/lock-tools/, never in .venv.
# The lock is for Linux x86_64 and the Python that runs this script (3.11, as in the image); re-run `lock` after
# changing [project] dependencies in pyproject.toml. Environment: PYTHON [python3].
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TOOLS=build/lock-tools
LOCK=requirements/service.lock
WHEELHOUSE=build/wheelhouse
step=${1:-all}
case "$step" in all|lock|sbom) ;; *) echo "usage: $0 [all|lock|sbom] (got '$step')" >&2; exit 2;; esac
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)

tools() {
  if [ ! -x "$TOOLS/bin/pip-compile" ] || [ ! -x "$TOOLS/bin/cyclonedx-py" ]; then
    rm -rf "$TOOLS"
    "$PYTHON" -m venv "$TOOLS"
    "$TOOLS/bin/pip" install -q --disable-pip-version-check "pip-tools==7.7.0" "cyclonedx-bom==7.5.0"
  fi
}

lock() {
  tools
  mkdir -p "$(dirname "$LOCK")"
  # --no-emit-*: no index or find-links of this machine in the file; the hashes say which files are accepted.
  CUSTOM_COMPILE_COMMAND="bash scripts/lock.sh lock" "$TOOLS/bin/pip-compile" -q --generate-hashes --strip-extras \
    --allow-unsafe --no-emit-index-url --no-emit-trusted-host --no-emit-find-links --newline LF \
    --output-file "$LOCK" pyproject.toml
  echo "lock: $LOCK, $(grep -c '^[a-zA-Z0-9]' "$LOCK") packages" >&2
}

sbom() {
  tools
  local wheel="$WHEELHOUSE/pneumo-$VERSION-py3-none-any.whl"
  [ -f "$wheel" ] || { echo "no $wheel; run 'bash scripts/build_image.sh wheelhouse' first" >&2; exit 1; }
  local env=build/sbom/env out=build/sbom/pneumo-$VERSION.cdx.json
  rm -rf "$env"
  "$PYTHON" -m venv --without-pip "$env"
  # The image's own install, offline: the locked dependencies by hash, then pneumo's wheel.
  "$TOOLS/bin/pip" --python "$env/bin/python" install -q --no-index --find-links "$WHEELHOUSE" --require-hashes \
    -r "$LOCK"
  "$TOOLS/bin/pip" --python "$env/bin/python" install -q --no-index --find-links "$WHEELHOUSE" --no-deps "$wheel"
  # The root component is pneumo as pyproject.toml describes it; the components are what the venv holds.
  "$TOOLS/bin/cyclonedx-py" environment --pyproject pyproject.toml --mc-type application --output-format JSON \
    --spec-version 1.6 --output-reproducible \
    --output-file "$out" "$env/bin/python"
  echo "sbom: $out, $("$PYTHON" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["components"]))' "$out") components" >&2
}

case "$step" in
  lock) lock ;;
  sbom) sbom ;;
  all) lock; sbom ;;
esac
