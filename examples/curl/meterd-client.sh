#!/usr/bin/env bash
# meterd client example in shell: curl for HTTP, jq for JSON, openssl for HMAC-SHA256.
#
#   meterd-client.sh send INSTANCE_ID [COUNT]     send COUNT (default 3) events of 2.5 units, now
#   meterd-client.sh preview INSTANCE_ID          the instance's usage and charge so far
#   meterd-client.sh verify SECRET SIGNATURE_HEADER BODY_FILE [--no-age-check]
#                                                 check a notification's Meterd-Signature
#
# Environment: METERD_URL (default http://127.0.0.1:9464), METERD_TOKEN (the bearer token, when
# the server has `server.token_env` set). Exit codes: 0 ok, 1 refused or failed, 2 bad usage.
set -euo pipefail

url="${METERD_URL:-http://127.0.0.1:9464}"
auth=()
[ -n "${METERD_TOKEN:-}" ] && auth=(-H "Authorization: Bearer $METERD_TOKEN")

usage() { sed -n '4,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# An HTTP call that prints the body, and fails with the server's error message on a non-2xx.
call() {
  local out status
  out=$(curl -sS -w '\n%{http_code}' "${auth[@]}" "$@") || { echo "cannot reach meterd at $url" >&2; exit 1; }
  status=${out##*$'\n'}
  out=${out%$'\n'*}
  if [ "${status:0:1}" != 2 ]; then
    echo "meterd answered $status: $(jq -r '.error // .' <<<"$out" 2>/dev/null || echo "$out")" >&2
    exit 1
  fi
  printf '%s' "$out"
}

send() {
  local instance=$1 count=${2:-3} now run body
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  run=$(date +%s)-$$
  # NDJSON: one event per line. `id` makes a resend of the same event a duplicate, never twice.
  body=$(for i in $(seq "$count"); do
    jq -cn --arg id "curl-$run-$i" --arg inst "$instance" --arg t "$now" \
      '{id: $id, instance_id: $inst, quantity: "2.5", time: $t}'
  done)
  local result
  result=$(call -X POST "$url/v1/events" -H 'Content-Type: application/x-ndjson' --data-binary "$body")
  jq -r '"sent \(.accepted + .duplicates + (.rejected | length)) events: accepted \(.accepted), duplicates \(.duplicates), rejected \(.rejected | length)"' <<<"$result"
  # Each refused event says what to fix.
  jq -r '.rejected[] | "  event #\(.index) \(.id // "-"): \(.error)"' <<<"$result"
  # A stop-before-excess package used up: the app must stop this instance's service now.
  jq -r '(.quota_exhausted // [])[] | "  quota exhausted: \(.) - stop its service"' <<<"$result"
  [ "$(jq '.rejected | length' <<<"$result")" = 0 ]
}

preview() {
  local instance=$1 p
  p=$(call -G "$url/v1/preview" --data-urlencode "instance=$instance")
  jq -r --arg inst "$instance" '
    (.instances[] | select(.instance_id == $inst) | "preview \(.instance_id): usage \(.usage) \(.unit), charge \(.charge) \(.currency)"),
    (.rows[] | select(.instance_id == $inst) | "  \(.begin_time) .. \(.end_time) \(.state): usage \(.usage), charge \(.charge)")' <<<"$p"
  jq -e --arg inst "$instance" 'any(.instances[]; .instance_id == $inst)' <<<"$p" >/dev/null \
    || { echo "preview: no usage for $instance yet" >&2; exit 1; }
}

# Compares two strings in time that depends only on their length, not on where they differ.
constant_time_eq() {
  local a=$1 b=$2 diff=0 i
  [ ${#a} -eq ${#b} ] || return 1
  for ((i = 0; i < ${#a}; i++)); do
    diff=$((diff | ($(printf '%d' "'${a:i:1}") ^ $(printf '%d' "'${b:i:1}"))))
  done
  [ "$diff" -eq 0 ]
}

verify() {
  local secret=$1 header=$2 file=$3 check_age=${4:-} t="" v1="" part expected now
  [ -z "$check_age" ] || [ "$check_age" = --no-age-check ] || usage
  IFS=',' read -ra parts <<<"$header"
  for part in "${parts[@]}"; do
    case $part in
      t=*) t=${part#t=} ;;
      v1=*) v1=${part#v1=} ;;
    esac
  done
  [[ $t =~ ^[0-9]+$ && $v1 =~ ^[0-9a-f]{64}$ ]] || { echo "signature INVALID: the header is not t=<unix seconds>,v1=<64 hex digits>" >&2; exit 1; }
  if [ "$check_age" != --no-age-check ]; then
    now=$(date +%s)
    if (( now - t > 300 || t - now > 300 )); then
      echo "signature INVALID: timestamp $t is more than 5 minutes from now ($now): a replay or a wrong clock" >&2
      exit 1
    fi
  fi
  # HMAC-SHA256 over "<t>." followed by the exact body bytes, key = the secret's UTF-8 bytes.
  expected=$({ printf '%s.' "$t"; cat -- "$file"; } | openssl dgst -sha256 -hmac "$secret" -r | cut -d' ' -f1)
  if constant_time_eq "$expected" "$v1"; then
    echo "signature valid (t=$t)"
  else
    echo "signature INVALID: the body or the secret does not match" >&2
    exit 1
  fi
}

case "${1:-}" in
  send) [ $# -ge 2 ] || usage; send "$2" "${3:-3}" ;;
  preview) [ $# -eq 2 ] || usage; preview "$2" ;;
  verify) [ $# -ge 4 ] && [ $# -le 5 ] || usage; verify "$2" "$3" "$4" "${5:-}" ;;
  *) usage ;;
esac
