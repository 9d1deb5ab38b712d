#!/usr/bin/env bash
# Build pneumo's container image offline from a wheelhouse (see docs/deploy.md).
#
#   bash scripts/build_image.sh              # both steps below
#   bash scripts/build_image.sh wheelhouse   # on a connected host: fill build/wheelhouse/ with pneumo's wheel and
#                                            # the files requirements/service.lock names, hash-checked
#   bash scripts/build_image.sh image        # anywhere, offline: build the image from build/wheelhouse/
#
# The image is the torch-free install (`pip install pneumo`: ONNX Runtime, Grad-CAM from the ONNX graph, the web
# service); EXTRAS=train would add torch for a training image (from the index pip is configured with).
#
# Environment (defaults in brackets):
#   PYTHON           interpreter whose pip fills the wheelhouse [.venv/bin/python, else python3]
#   BASE_IMAGE       base image with python3.11 and its venv module, pinned by digest
#                    (python:3.11-slim@sha256:...); a bare tag is refused unless ALLOW_UNPINNED_BASE=1
#   IMAGE            tag of the result [pneumo:VERSION]
#   ENGINE           podman or docker [podman when installed, else docker]
#   ENGINE_FLAGS     global flags for the engine, e.g. "--runtime runc" []
#   BUILD_FLAGS      extra flags for its build, e.g. "--ulimit nofile=1024:1024 --ulimit nproc=1024:1024" []
#   EXTRAS           pneumo's optional extras to include, comma-separated, e.g. "postgres" []; their packages are
#                    pinned by the wheelhouse, not by the lock (which covers pneumo without extras)
#   SOURCE_URL       the image's org.opencontainers.image.source label [git remote "origin", if any]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CONTEXT=$ROOT/build
WHEELHOUSE=$CONTEXT/wheelhouse
LOCK=$ROOT/requirements/service.lock
step=${1:-all}
case "$step" in all|wheelhouse|image) ;; *) echo "usage: $0 [all|wheelhouse|image] (got '$step')" >&2; exit 2;; esac

if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
[ -n "$VERSION" ] || { echo "could not read pneumo's version from pyproject.toml" >&2; exit 1; }

fill_wheelhouse() {
  [ -f "$LOCK" ] || { echo "no $LOCK; run 'bash scripts/lock.sh lock' first" >&2; exit 1; }
  rm -rf "$WHEELHOUSE"
  mkdir -p "$WHEELHOUSE"
  echo "wheelhouse: pneumo $VERSION${EXTRAS:+[$EXTRAS]} -> $WHEELHOUSE" >&2
  "$PYTHON" -m pip wheel -q --no-deps --wheel-dir "$WHEELHOUSE" .
  local wheel="$WHEELHOUSE/pneumo-$VERSION-py3-none-any.whl"
  [ -f "$wheel" ] || { echo "expected $wheel after building pneumo's wheel" >&2; exit 1; }
  echo "wheelhouse: the locked dependencies ($LOCK), each file checked against its hash" >&2
  "$PYTHON" -m pip wheel -q --require-hashes --wheel-dir "$WHEELHOUSE" -r "$LOCK"
  # The build reads the lock from the context, and checks the wheel it installs against this hash.
  cp "$LOCK" "$WHEELHOUSE/service.lock"
  echo "pneumo==$VERSION --hash=sha256:$(sha256sum "$wheel" | cut -d' ' -f1)" > "$WHEELHOUSE/pneumo.lock"
  if [ -n "${EXTRAS:-}" ]; then
    echo "wheelhouse: the extras $EXTRAS (pinned by this wheelhouse, not by the lock)" >&2
    "$PYTHON" -m pip wheel -q --wheel-dir "$WHEELHOUSE" --find-links "$WHEELHOUSE" "$wheel[$EXTRAS]"
  fi
  echo "wheelhouse: $(ls "$WHEELHOUSE"/*.whl | wc -l) wheels, $(du -sh "$WHEELHOUSE" | cut -f1)" >&2
}

build_image() {
  [ -f "$WHEELHOUSE/pneumo-$VERSION-py3-none-any.whl" ] || {
    echo "$WHEELHOUSE has no pneumo-$VERSION wheel; run '$0 wheelhouse' first (on a connected host)" >&2; exit 1; }
  local engine=${ENGINE:-}
  if [ -z "$engine" ]; then
    if command -v podman >/dev/null 2>&1; then engine=podman
    elif command -v docker >/dev/null 2>&1; then engine=docker
    else echo "neither podman nor docker is installed; set ENGINE" >&2; exit 1; fi
  fi
  local image=${IMAGE:-pneumo:$VERSION}
  local base=${BASE_IMAGE:-python:3.11-slim}
  # A tag moves; a digest names exactly the bytes the image starts from, so the build refuses a bare tag.
  case "$base" in
    *@sha256:*) ;;
    *) if [ "${ALLOW_UNPINNED_BASE:-0}" != 1 ]; then
         echo "base image $base is not pinned by digest: set BASE_IMAGE=$base@sha256:... (the digest from" \
              "'$engine pull $base && $engine image inspect --format {{.Digest}} $base' on a connected host)," \
              "or ALLOW_UNPINNED_BASE=1 for a throwaway build" >&2
         exit 1
       fi
       echo "warning: base image $base is not pinned by digest (ALLOW_UNPINNED_BASE=1)" >&2 ;;
  esac
  local source_url=${SOURCE_URL:-$(git remote get-url origin 2>/dev/null || true)}
  local revision
  revision=$(git rev-parse HEAD 2>/dev/null || true)
  # podman's default OCI format drops HEALTHCHECK; the docker format keeps it.
  local format=()
  [ "$engine" = podman ] && format=(--format docker)
  echo "image: $image from $base, $engine, no network inside the build" >&2
  # shellcheck disable=SC2086  # the *_FLAGS are word lists on purpose
  "$engine" ${ENGINE_FLAGS:-} build ${BUILD_FLAGS:-} "${format[@]}" --network none -f "$ROOT/Containerfile" \
    --build-arg "BASE_IMAGE=$base" --build-arg "PNEUMO_VERSION=$VERSION" \
    --build-arg "PNEUMO_EXTRAS=${EXTRAS:-}" \
    --build-arg "SOURCE_URL=$source_url" --build-arg "REVISION=$revision" -t "$image" "$CONTEXT"
  local size
  # shellcheck disable=SC2086
  size=$("$engine" ${ENGINE_FLAGS:-} image inspect --format '{{.Size}}' "$image")
  echo "image: $image, $((size / 1000000)) MB" >&2
}

case "$step" in
  wheelhouse) fill_wheelhouse ;;
  image) build_image ;;
  all) fill_wheelhouse; build_image ;;
esac
