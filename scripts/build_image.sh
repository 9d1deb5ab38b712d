#!/usr/bin/env bash
# Build pneumo's container image offline from a wheelhouse (see docs/deploy.md).
#
#   bash scripts/build_image.sh              # both steps below
#   bash scripts/build_image.sh wheelhouse   # on a connected host: fill build/wheelhouse/ (pneumo + pinned deps)
#   bash scripts/build_image.sh image        # anywhere, offline: build the image from build/wheelhouse/
#
# Environment (defaults in brackets):
#   PYTHON           interpreter whose pip fills the wheelhouse [.venv/bin/python, else python3]
#   TORCH_INDEX_URL  where the CPU-only torch/torchvision wheels come from [https://download.pytorch.org/whl/cpu];
#                    "pypi" takes them from the ordinary index instead (on PyPI that is the CUDA build, ~2.5 GB
#                    of extra wheels)
#   BASE_IMAGE       base image with python3.11 and its venv module [python:3.11-slim]
#   IMAGE            tag of the result [pneumo:VERSION]
#   ENGINE           podman or docker [podman when installed, else docker]
#   ENGINE_FLAGS     global flags for the engine, e.g. "--runtime runc" []
#   BUILD_FLAGS      extra flags for its build, e.g. "--ulimit nofile=1024:1024 --ulimit nproc=1024:1024" []
#   EXTRAS           pneumo's optional extras to include, comma-separated, e.g. "postgres" []
#   SOURCE_URL       the image's org.opencontainers.image.source label [git remote "origin", if any]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CONTEXT=$ROOT/build
WHEELHOUSE=$CONTEXT/wheelhouse
step=${1:-all}
case "$step" in all|wheelhouse|image) ;; *) echo "usage: $0 [all|wheelhouse|image] (got '$step')" >&2; exit 2;; esac

if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
# Versions from pyproject.toml: pneumo's own, and the torch/torchvision pins.
read -r VERSION TORCH TORCHVISION < <("$PYTHON" - <<'PY'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
pins = {d.split("==")[0].strip(): d.split("==")[1].strip() for d in project["dependencies"] if "==" in d}
print(project["version"], pins["torch"], pins["torchvision"])
PY
)
[ -n "${TORCHVISION:-}" ] || { echo "could not read pneumo's version and the torch/torchvision pins from pyproject.toml" >&2; exit 1; }

fill_wheelhouse() {
  rm -rf "$WHEELHOUSE"
  mkdir -p "$WHEELHOUSE"
  echo "wheelhouse: pneumo $VERSION${EXTRAS:+[$EXTRAS]} -> $WHEELHOUSE" >&2
  "$PYTHON" -m pip wheel -q --no-deps --wheel-dir "$WHEELHOUSE" .
  local wheel="$WHEELHOUSE/pneumo-$VERSION-py3-none-any.whl"
  [ -f "$wheel" ] || { echo "expected $wheel after building pneumo's wheel" >&2; exit 1; }
  local torch_index=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
  if [ "$torch_index" != pypi ]; then
    echo "wheelhouse: CPU torch $TORCH, torchvision $TORCHVISION from $torch_index" >&2
    if ! "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --index-url "$torch_index" \
        --dest "$WHEELHOUSE" "torch==$TORCH" "torchvision==$TORCHVISION"; then
      echo "could not download torch==$TORCH / torchvision==$TORCHVISION from $torch_index; give an index (or a" \
           "mirror) that has the CPU wheels in TORCH_INDEX_URL, or TORCH_INDEX_URL=pypi to take the ordinary" \
           "index's build (CUDA on PyPI: a much larger image)" >&2
      exit 1
    fi
    # pip's configured extra indexes are consulted too; make sure what arrived really is the CPU build.
    compgen -G "$WHEELHOUSE/torch-$TORCH+cpu-*.whl" >/dev/null || {
      echo "no torch-$TORCH+cpu wheel in $WHEELHOUSE after downloading from $torch_index:" \
           "$(ls "$WHEELHOUSE" | grep '^torch' | tr '\n' ' ')" >&2; exit 1; }
  fi
  echo "wheelhouse: pneumo's dependencies" >&2
  "$PYTHON" -m pip wheel -q --wheel-dir "$WHEELHOUSE" --find-links "$WHEELHOUSE" "$wheel${EXTRAS:+[$EXTRAS]}"
  echo "wheelhouse: $(ls "$WHEELHOUSE" | wc -l) wheels, $(du -sh "$WHEELHOUSE" | cut -f1)" >&2
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
  local source_url=${SOURCE_URL:-$(git remote get-url origin 2>/dev/null || true)}
  local revision
  revision=$(git rev-parse HEAD 2>/dev/null || true)
  # podman's default OCI format drops HEALTHCHECK; the docker format keeps it.
  local format=()
  [ "$engine" = podman ] && format=(--format docker)
  echo "image: $image from ${BASE_IMAGE:-python:3.11-slim}, $engine, no network inside the build" >&2
  # shellcheck disable=SC2086  # the *_FLAGS are word lists on purpose
  "$engine" ${ENGINE_FLAGS:-} build ${BUILD_FLAGS:-} "${format[@]}" --network none -f "$ROOT/Containerfile" \
    --build-arg "BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}" --build-arg "PNEUMO_VERSION=$VERSION" \
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
