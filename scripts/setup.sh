#!/usr/bin/env bash
# Fresh-machine setup of .venv.
#
#   bash scripts/setup.sh --predict   # only what predicting needs: pneumo without extras (ONNX Runtime, NumPy,
#                                     # Pillow, pydicom, the web service); no torch. Predict, Grad-CAM, serve.
#   bash scripts/setup.sh             # the whole suite: pneumo[dev,ray] (dev includes train: torch pinned, pip
#                                     # takes it from local disk here), plus Debian's chromium (browser test),
#                                     # postgresql (history on PostgreSQL; the tests start a throwaway server) and
#                                     # orthanc with its DICOMweb plugin (the DICOM node's tests run against a
#                                     # throwaway Orthanc PACS), and podman, runc and mmdebstrap
#                                     # (bench/container_e2e.sh) when apt is available.
#
# Both install pneumo editable into the same .venv, so the full setup can follow a --predict one.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  --predict) mode=predict ;;
  "") mode=full ;;
  *) echo "usage: bash scripts/setup.sh [--predict]" >&2; exit 2 ;;
esac
if [ "$mode" = predict ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -e .  # no extras: no torch
  exit 0
fi
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || missing+=(postgresql)
command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ] || missing+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || missing+=(orthanc-dicomweb)
# The container bench (bench/container_e2e.sh) builds its base with mmdebstrap and runs it with podman + runc.
for tool in podman runc mmdebstrap; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  (apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null) \
    || echo "warning: could not install ${missing[*]}; the tests that need them will be skipped" >&2
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev,ray]'  # ray: the --engine ray tests; dev pulls train and dicom
