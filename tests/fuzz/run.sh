#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document with schemathesis (PyPI), once per role
# (admin, trainer, participant), against the real server binary on a fresh database. Fails on any
# 5xx, any status the spec does not list for the operation, and any answer outside its schema.
#
#   tests/fuzz/run.sh [DATABASE_URL]      (default: a fresh SQLite file)
#   FUZZ_SECONDS=40 sets the time per role.
set -euo pipefail
cd "$(dirname "$0")/../.."

BINARY="${FUZZ_BINARY:-target/debug/veldwerk}"
SECONDS_PER_ROLE="${FUZZ_SECONDS:-40}"
WORK="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
DATABASE="${1:-sqlite://$WORK/fuzz.db?mode=rwc}"
SERVER=""
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

VELDWERK_DATABASE_URL="$DATABASE" VELDWERK_LISTEN="127.0.0.1:$PORT" VELDWERK_DATA_DIR="$WORK/data" \
  VELDWERK_LOG_FORMAT=json VELDWERK_LOG_FILTER=error \
  VELDWERK_RATE_LIMIT_PER_ADDRESS=100000000 VELDWERK_RATE_LIMIT_PER_ACCOUNT=100000000 \
  VELDWERK_ACCESS_TOKEN_TTL_SECS=3600 \
  "$BINARY" serve > "$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 60); do
  curl -fs "$BASE/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fs "$BASE/readyz" >/dev/null || { echo "the server did not start:"; cat "$WORK/server.log"; exit 1; }

login() {
  curl -fs -X POST "$BASE/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$1\",\"password\":\"$2\"}" | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}
ADMIN="$(login admin@veldwerk.test demo-admin-wachtwoord)"
TRAINER="$(login trainer@veldwerk.test demo-trainer-wachtwoord)"
COHORT="$(curl -fs "$BASE/v1/cohorts" -H "authorization: Bearer $TRAINER" | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["id"])')"
CODE="$(curl -fs -X POST "$BASE/v1/cohorts/$COHORT/invites" -H "authorization: Bearer $TRAINER" \
  -H 'content-type: application/json' -d '{}' | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["code"])')"
PARTICIPANT="$(curl -fs -X POST "$BASE/v1/auth/enrol" -H 'content-type: application/json' \
  -d "{\"invite_code\":\"$CODE\",\"display_name\":\"Fuzz\"}" | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')"

status=0
for role in admin trainer participant; do
  case "$role" in
    admin) token="$ADMIN" ;;
    trainer) token="$TRAINER" ;;
    participant) token="$PARTICIPANT" ;;
  esac
  echo "== schemathesis as $role, ${SECONDS_PER_ROLE}s, on ${DATABASE%%:*}"
  # Logging out, revoking the caller's own device or deleting the caller's account (`DELETE /me`;
  # the exclusion takes `GET /me` along) would end the fuzzing session itself.
  if ! st run "$BASE/openapi.json" \
      --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
      --header "Authorization: Bearer $token" \
      --exclude-path /auth/logout --exclude-path /me --exclude-path-regex '^/me/devices/' \
      --exclude-path /sync/events \
      --phases examples,coverage,fuzzing \
      --max-time "$SECONDS_PER_ROLE" --workers 1 \
      --suppress-health-check all --warnings off \
      --request-timeout 10 > "$WORK/$role.txt" 2>&1; then
    status=1
    tail -120 "$WORK/$role.txt"
  else
    grep -E "passed|failed|Test cases" "$WORK/$role.txt" | tail -4
  fi
done
if grep -q '"level":"ERROR"' "$WORK/server.log"; then
  echo "the server logged errors:"; grep '"level":"ERROR"' "$WORK/server.log" | head -20
  status=1
fi
exit "$status"
