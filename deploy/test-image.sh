#!/usr/bin/env bash
# Builds the real image with Podman and runs it against the host's PostgreSQL: waits for
# /readyz, makes real API calls, sends SIGTERM, checks a clean exit, removes the container.
#
# No image can be pulled here, so a Debian bookworm base is made with debootstrap from the
# mirror apt already uses and tagged debian:bookworm-slim; the binary is built on the host and
# packaged through the Dockerfile's `prebuilt` stage. Needs root, podman, runc, debootstrap.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${VELDWERK_IMAGE_TEST_PORT:-18080}"
PG_URL="${VELDWERK_IMAGE_TEST_PG:-postgres://postgres@127.0.0.1:5432}"
DATABASE="veldwerk_image_test_$$"
WORK="$(mktemp -d)"
CONTAINER=""

cleanup() {
  if [ -n "$CONTAINER" ]; then podman rm -f "$CONTAINER" >/dev/null 2>&1 || true; fi
  psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf deploy/.build
}
trap cleanup EXIT

# Podman settings of our own: runc (crun fails here), cgroupfs, a file event log, lower ulimits,
# and storage under the work folder (kept between runs in a cache folder if given).
STORE="${VELDWERK_IMAGE_TEST_STORE:-$WORK/storage}"
mkdir -p "$STORE"
cat > "$WORK/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
cat > "$WORK/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$STORE/graph"
runroot = "$STORE/run"
CONF
export CONTAINERS_CONF="$WORK/containers.conf" CONTAINERS_STORAGE_CONF="$WORK/storage.conf"

if ! podman image exists debian:bookworm-slim; then
  mirror="$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
  if [ -z "$mirror" ]; then
    mirror="$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list)"
  fi
  echo "making a Debian bookworm base from $mirror"
  debootstrap --variant=minbase bookworm "$WORK/rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log"; exit 1; }
  tar -C "$WORK/rootfs" -c . | podman import - debian:bookworm-slim >/dev/null
fi

cargo build --release --locked -p veldwerk-server
mkdir -p deploy/.build/etc/ssl/certs
cp target/release/veldwerk deploy/.build/veldwerk
cp /etc/ssl/certs/ca-certificates.crt deploy/.build/etc/ssl/certs/

podman build --pull=never -f deploy/Dockerfile \
  --build-arg BINARY_STAGE=prebuilt --build-arg RUST_IMAGE=debian:bookworm-slim \
  -t veldwerk:test .

psql "$PG_URL/postgres" -qc "CREATE DATABASE $DATABASE"
mkdir -p "$WORK/data" && chown 10001:10001 "$WORK/data"
CONTAINER="$(podman run -d --network host --read-only \
  -v "$WORK/data:/app/data" \
  -e PORT="$PORT" \
  -e VELDWERK_DATABASE_URL="$PG_URL/$DATABASE" \
  -e VELDWERK_JWT_SECRET="image-test-secret-$(date +%s)-that-is-long-enough" \
  -e VELDWERK_SHUTDOWN_DRAIN_SECS=1 \
  -e VELDWERK_PUSH_MODE=log \
  veldwerk:test)"
echo "container $CONTAINER"

for _ in $(seq 1 60); do
  if curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then break; fi
  sleep 1
done
curl -fsS "http://127.0.0.1:$PORT/readyz"; echo

# A real API call: bootstrap a provider inside the container, then log in over HTTP.
echo 'image-test-password' | podman exec -i "$CONTAINER" \
  /usr/local/bin/veldwerk bootstrap --provider "Image test" --email admin@image.test
status="$(curl -s -o "$WORK/login.json" -w '%{http_code}' -X POST "http://127.0.0.1:$PORT/v1/auth/login" \
  -H 'content-type: application/json' \
  -d '{"email":"admin@image.test","password":"image-test-password"}')"
[ "$status" = 201 ] || { echo "login answered $status: $(cat "$WORK/login.json")"; exit 1; }
grep -q access_token "$WORK/login.json"
echo "login through the container: $status"

podman kill --signal TERM "$CONTAINER" >/dev/null
exit_code="$(podman wait "$CONTAINER")"
[ "$exit_code" = 0 ] || { podman logs "$CONTAINER" | tail -20; echo "exit code $exit_code after SIGTERM"; exit 1; }
echo "clean exit after SIGTERM"
# Production logs are for collectors: every line one JSON object, no banner between them.
podman logs "$CONTAINER" > "$WORK/container.log" 2>&1
python3 -c 'import json, sys
lines = [line for line in open(sys.argv[1]) if line.strip()]
for line in lines:
    json.loads(line)
print(f"{len(lines)} log lines, all JSON")' "$WORK/container.log"
podman rm "$CONTAINER" >/dev/null
CONTAINER=""
echo "image test passed"
