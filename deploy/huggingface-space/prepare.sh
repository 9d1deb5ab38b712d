#!/usr/bin/env bash
# Assemble a Hugging Face Space repository in dist/huggingface-space/ (see README.md here, docs/deploy.md).
#
#   bash deploy/huggingface-space/prepare.sh --image REGISTRY/pneumo:VERSION   # the Space runs a pushed image
#   bash deploy/huggingface-space/prepare.sh --wheelhouse                      # the Space builds from build/wheelhouse/
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SPACE=$ROOT/dist/huggingface-space
# The Space shows the app in a frame on huggingface.co; pneumo refuses framing unless told which origin may.
SERVE='CMD ["serve", "--host", "0.0.0.0", "--port", "7860", "--data-dir", "/data", "--frame-ancestor", "https://huggingface.co", "--trusted-host", "*"]'
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)

usage() { echo "usage: $0 --image REGISTRY/pneumo:VERSION | --wheelhouse" >&2; exit 2; }
[ $# -ge 1 ] || usage
rm -rf "$SPACE"
mkdir -p "$SPACE"
cp deploy/huggingface-space/README.md "$SPACE/README.md"
case "$1" in
  --image)
    [ $# -eq 2 ] && [ -n "$2" ] || usage
    printf '# pneumo, built by scripts/build_image.sh and pushed to a registry.\nFROM %s\n%s\n' "$2" "$SERVE" \
      > "$SPACE/Dockerfile"
    ;;
  --wheelhouse)
    [ $# -eq 1 ] || usage
    wheel=build/wheelhouse/pneumo-$VERSION-py3-none-any.whl
    [ -f "$wheel" ] || { echo "no $wheel; run 'bash scripts/build_image.sh wheelhouse' first" >&2; exit 1; }
    if compgen -G "build/wheelhouse/torch-*.whl" >/dev/null; then
      echo "warning: build/wheelhouse/ holds torch ($(du -sh build/wheelhouse | cut -f1)), so the Space's image would" \
           "too; the Space predicts and explains on ONNX Runtime: fill the wheelhouse without EXTRAS=train" >&2
    fi
    # The Containerfile as is, with the version it must install filled in and the Space's serve command.
    sed "s/^ARG PNEUMO_VERSION\$/ARG PNEUMO_VERSION=$VERSION/" Containerfile > "$SPACE/Dockerfile"
    grep -q "^ARG PNEUMO_VERSION=$VERSION\$" "$SPACE/Dockerfile" \
      || { echo "Containerfile has no 'ARG PNEUMO_VERSION' line to fill in" >&2; exit 1; }
    printf '\n# The Space frames the app on huggingface.co.\n%s\n' "$SERVE" >> "$SPACE/Dockerfile"
    cp -al build/wheelhouse "$SPACE/wheelhouse" 2>/dev/null || cp -a build/wheelhouse "$SPACE/wheelhouse"
    ;;
  *) usage ;;
esac
echo "Space repository ready in $SPACE ($(du -sh "$SPACE" | cut -f1)): README.md, Dockerfile$([ -d "$SPACE/wheelhouse" ] && echo ', wheelhouse/')" >&2
