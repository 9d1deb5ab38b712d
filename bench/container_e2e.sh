#!/usr/bin/env bash
# End-to-end check of the container recipe: build the image offline from a local base and the wheelhouse,
# start it as it is meant to run (read-only root filesystem, uid 1000, history in a /data volume, no network
# at all: only the container's own loopback), wait for its HEALTHCHECK, predict a sample X-ray through the
# REST API, check the page, restart on the same volume and find the history still there, then stop it.
#
#   bash bench/container_e2e.sh
#
# Minutes, not seconds (it makes a base image and builds one), so it is not part of the pytest suite: run it
# before every change to the Containerfile, requirements/service.lock or scripts/build_image.sh. It prints the
# time of each step and the image size.
#
# Environment: BASE_IMAGE [localhost/pneumo-base, made here with mmdebstrap + podman import when missing],
# REUSE_WHEELHOUSE=1 to keep an existing build/wheelhouse/,
# ENGINE_FLAGS [--runtime runc when runc is installed] and LIMITS [--ulimit nofile=1024:1024 --ulimit
# nproc=1024:1024]: what this project's build machine needs (its crun refuses to start containers).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if ! command -v podman >/dev/null 2>&1; then
  echo "SKIPPED: podman is not installed, so the container recipe was not checked" \
       "(apt-get install -y podman runc mmdebstrap, then run this again)"
  exit 0
fi
if [ -z "${ENGINE_FLAGS+x}" ]; then
  ENGINE_FLAGS=""
  command -v runc >/dev/null 2>&1 && ENGINE_FLAGS="--runtime runc"
fi
LIMITS=${LIMITS:---ulimit nofile=1024:1024 --ulimit nproc=1024:1024}
BASE_IMAGE=${BASE_IMAGE:-localhost/pneumo-base}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
IMAGE=localhost/pneumo-e2e:$VERSION
NAME=pneumo-e2e-$$
VOLUME=pneumo-e2e-data-$$
# shellcheck disable=SC2086  # flag lists on purpose
pod() { podman $ENGINE_FLAGS "$@"; }
step_start=$SECONDS
step() { echo "[$((SECONDS - step_start)) s] $*" >&2; step_start=$SECONDS; }
cleanup() {
  pod rm -f -t 5 "$NAME" >/dev/null 2>&1 || true
  pod volume rm -f "$VOLUME" >/dev/null 2>&1 || true
}
trap cleanup EXIT

if ! pod image exists "$BASE_IMAGE"; then
  if [ "$BASE_IMAGE" != localhost/pneumo-base ]; then
    echo "base image $BASE_IMAGE is not present and no registry is reached here; pull or load it first" >&2; exit 1
  fi
  command -v mmdebstrap >/dev/null 2>&1 || {
    echo "SKIPPED: no base image localhost/pneumo-base and no mmdebstrap to make one (apt-get install -y mmdebstrap)"
    exit 0; }
  tmp=$(mktemp -d)
  nice -n 10 mmdebstrap -q --variant=apt --include=python3,python3-venv,ca-certificates bookworm "$tmp/base.tar"
  pod import -q "$tmp/base.tar" localhost/pneumo-base >/dev/null
  rm -rf "$tmp"
  step "made base image localhost/pneumo-base (Debian bookworm, python3.11)"
fi

if [ "${REUSE_WHEELHOUSE:-0}" = 1 ] && compgen -G "build/wheelhouse/pneumo-$VERSION-*.whl" >/dev/null; then
  echo "reusing build/wheelhouse/ (REUSE_WHEELHOUSE=1)" >&2
else
  nice -n 10 bash scripts/build_image.sh wheelhouse
  step "filled build/wheelhouse/ ($(du -sh build/wheelhouse | cut -f1))"
fi
# build_image.sh builds with --network none: nothing can be fetched inside the build; it takes the base by digest.
case "$BASE_IMAGE" in
  *@sha256:*) PINNED_BASE=$BASE_IMAGE ;;
  *) PINNED_BASE="$BASE_IMAGE@$(pod image inspect --format '{{.Digest}}' "$BASE_IMAGE")" ;;
esac
ENGINE=podman ENGINE_FLAGS="$ENGINE_FLAGS" BUILD_FLAGS="$LIMITS" BASE_IMAGE="$PINNED_BASE" IMAGE="$IMAGE" \
  nice -n 10 bash scripts/build_image.sh image
step "built $IMAGE"
size=$(pod image inspect --format '{{.Size}}' "$IMAGE")
echo "image size: $((size / 1000000)) MB; labels: $(pod image inspect --format '{{json .Labels}}' "$IMAGE")"

# No --user: the image itself must run as uid 1000. No automatic health timer (podman needs systemd for it);
# the HEALTHCHECK is run on demand by wait_healthy.
run_container() {
  # shellcheck disable=SC2086
  pod run -d --name "$NAME" --read-only --network none --health-interval disable $LIMITS \
    -v "$VOLUME:/data" -v "$ROOT/tests/assets:/samples:ro" "$IMAGE" >/dev/null
}
wait_healthy() {
  for _ in $(seq 1 90); do
    if pod healthcheck run "$NAME" >/dev/null 2>&1; then return 0; fi
    [ "$(pod inspect --format '{{.State.Running}}' "$NAME")" = true ] || { pod logs "$NAME" >&2; return 1; }
    sleep 2
  done
  echo "$NAME never became healthy" >&2; pod logs "$NAME" >&2; return 1
}
# The checks run inside the container's network namespace, which holds nothing but loopback.
in_container() { pod exec -i -e "TOKEN=$TOKEN" "$NAME" python3 - "$@"; }

# The image listens on 0.0.0.0: it refuses to start until the volume's history holds an account (issue 25).
printf '%s\n' "container-e2e-password" | pod run --rm -i --read-only --network none $LIMITS -v "$VOLUME:/data" \
  "$IMAGE" users add e2e-clinician --role clinician --data-dir /data
TOKEN=$(pod run --rm --read-only --network none $LIMITS -v "$VOLUME:/data" "$IMAGE" \
  users token e2e-clinician --data-dir /data --expires-days 1 | tail -1)
export TOKEN
step "made an account and an API token in the volume (pneumo users)"
run_container
wait_healthy
uid=$(pod exec "$NAME" id -u)
[ "$uid" = 1000 ] || { echo "the container runs as uid $uid, not 1000" >&2; exit 1; }
step "started: read-only root, uid $uid, no network, healthy (HEALTHCHECK)"
in_container <<'PY'
import json, os, urllib.request, uuid

base = "http://127.0.0.1:7860"
auth = {"Authorization": f"Bearer {os.environ['TOKEN']}"}
get = lambda path: urllib.request.urlopen(urllib.request.Request(base + path, headers=auth), timeout=10)
health = json.load(get("/api/v1/status"))  # /health names no database
assert health["status"] == "ok" and health["database"] == "sqlite", health
page = urllib.request.urlopen(f"{base}/", timeout=10).read()
assert b"/static/app.js" in page, page[:200]
for path in ("/static/app.js", "/static/app.css", "/docs", "/openapi.json"):
    assert get(path).status == 200, path
sample = "/samples/person1946_bacteria_4874.jpeg"
boundary = uuid.uuid4().hex
body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="xray.jpeg"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n").encode() + open(sample, "rb").read() + f"\r\n--{boundary}--\r\n".encode()
request = urllib.request.Request(f"{base}/api/v1/predict", data=body,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}", **auth})
result = json.load(urllib.request.urlopen(request, timeout=300))
assert result["label"] in ("NORMAL", "PNEUMONIA", "UNKNOWN"), result
assert result["label"] == "UNKNOWN" or result["heatmap"], "no Grad-CAM heatmap for a scored image"
print(f"predicted {sample}: {result['label']} p={result['probability']} model {result['model_version']} "
      f"in {result['timing_ms']['request']:.0f} ms")
PY
step "health, page, /docs and one prediction through the API"
pod exec "$NAME" test -s /data/history.sqlite3
pod rm -f -t 10 "$NAME" >/dev/null
run_container
wait_healthy
in_container <<'PY'
import json, os, urllib.request

request = urllib.request.Request("http://127.0.0.1:7860/api/v1/history",
                                 headers={"Authorization": f"Bearer {os.environ['TOKEN']}"})
history = json.load(urllib.request.urlopen(request, timeout=10))
assert history["total"] == 1, history
print("history kept in the /data volume across a restart: 1 entry")
PY
step "restarted on the same volume"
pod rm -f -t 10 "$NAME" >/dev/null
# The Hugging Face Space's command (deploy/huggingface-space/prepare.sh): framed on huggingface.co, page and
# API at the URL root.
SPACE_CMD=(serve --host 0.0.0.0 --port 7860 --data-dir /data --frame-ancestor https://huggingface.co)
# shellcheck disable=SC2086
pod run -d --name "$NAME" --read-only --network none --health-interval disable $LIMITS -v "$VOLUME:/data" \
  "$IMAGE" "${SPACE_CMD[@]}" >/dev/null
wait_healthy
in_container <<'PY'
import json, urllib.request

page = urllib.request.urlopen("http://127.0.0.1:7860/", timeout=10)
policy = page.headers["Content-Security-Policy"]
assert "frame-ancestors https://huggingface.co;" in policy and page.headers["X-Frame-Options"] is None, page.headers
assert json.load(urllib.request.urlopen("http://127.0.0.1:7860/api/v1/health", timeout=10))["status"] == "ok"
print("as the Space runs it: page framable by https://huggingface.co only, API at the root")
PY
pod rm -f -t 10 "$NAME" >/dev/null
step "the Space's command"
# shellcheck disable=SC2086
pod run --rm --read-only --network none --no-healthcheck $LIMITS -v "$ROOT/tests/assets:/samples:ro" "$IMAGE" predict /samples
step "pneumo predict inside the image (the entrypoint takes any pneumo command)"
echo "container end-to-end check passed; image $IMAGE, $((size / 1000000)) MB"
