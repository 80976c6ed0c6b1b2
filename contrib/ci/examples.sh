#!/usr/bin/env bash
# Runs every client example of examples/ against a live `meterd run` on loopback (issue 17),
# so they never rot: each sends events, reads the preview and must show exactly the usage it
# sent, then verifies fixtures/notify/signature-vector.json, refuses a tampered body and a
# wrong secret, and refuses the vector's old timestamp unless told to skip the age check.
#
#   contrib/ci/examples.sh [PATH_TO_METERD]    (default: target/release/meterd, else debug)
#
# Needs curl, jq, openssl, python3 and java (17+). Without java the Java example is skipped
# with a reason, except under CI=true where that fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
. contrib/ci/daemon.sh
bin=$(find_bin "${1:-}") || exit 2
start_daemon "$bin" || exit 2
export METERD_URL="http://$addr"

# The vector's parts as files: the exact body bytes, and a tampered copy.
python3 - "$work" <<'PY'
import json, sys
v = json.load(open("fixtures/notify/signature-vector.json"))
d = sys.argv[1]
open(f"{d}/body", "wb").write(v["body"].encode("utf-8"))
open(f"{d}/tampered", "wb").write(v["body"].replace('"remaining":"200"', '"remaining":"900"').encode("utf-8"))
open(f"{d}/secret", "w").write(v["secret"])
open(f"{d}/header", "w").write(v["header_value"])
PY
secret=$(cat "$work/secret")
header=$(cat "$work/header")

passed=0
failed=0
fail() { echo "FAIL $*" >&2; failed=$((failed + 1)); }
ok() { echo "ok   $*"; passed=$((passed + 1)); }

# expect NAME CODE PATTERN -- COMMAND…: runs it, checks its exit code and that its output
# (stdout and stderr) matches the extended regex PATTERN.
expect() {
  local name=$1 code=$2 pattern=$3 out rc
  shift 4
  set +e
  out=$("$@" 2>&1)
  rc=$?
  set -e
  if [ "$rc" -ne "$code" ]; then
    fail "$name: exit $rc, expected $code; output:"$'\n'"$out"
  elif ! grep -Eq -- "$pattern" <<<"$out"; then
    fail "$name: output does not match /$pattern/:"$'\n'"$out"
  else
    ok "$name"
  fi
}

# One client: 3 events of 2.5 units each; the preview must then show the usage sent so far.
sent=0
check_client() {
  local lang=$1
  shift
  expect "$lang send" 0 '^sent 3 events: accepted 3, duplicates 0, rejected 0$' -- "$@" send "$instance" 3
  sent=$((sent + 3))
  local usage
  usage=$(python3 -c "from decimal import Decimal; print(format((Decimal('2.5') * $sent).normalize(), 'f'))")
  expect "$lang preview" 0 "^preview $instance: usage $usage call, charge [0-9.]+ CNY$" -- "$@" preview "$instance"
  expect "$lang verify vector" 0 '^signature valid \(t=1764460800\)$' -- "$@" verify "$secret" "$header" "$work/body" --no-age-check
  expect "$lang refuse tampered body" 1 'signature INVALID: the body or the secret does not match' -- "$@" verify "$secret" "$header" "$work/tampered" --no-age-check
  expect "$lang refuse wrong secret" 1 'signature INVALID' -- "$@" verify "${secret}x" "$header" "$work/body" --no-age-check
  expect "$lang refuse old timestamp" 1 'signature INVALID: timestamp 1764460800 is more than 5 minutes from now' -- "$@" verify "$secret" "$header" "$work/body"
  expect "$lang quota exhausted" 0 "^  quota exhausted: $prepaid - stop its service$" -- "$@" send "$prepaid" 1
  expect "$lang refuse missing token" 1 'meterd answered 401' -- env METERD_TOKEN= "$@" preview "$instance"
}

check_client curl bash examples/curl/meterd-client.sh
check_client python python3 examples/python/meterd_client.py
if command -v java >/dev/null 2>&1; then
  check_client java java examples/java/MeterdClient.java
elif [ "${CI:-}" = true ]; then
  fail "java: not installed (install openjdk-17-jdk-headless)"
else
  echo "skip java: no java on PATH (install openjdk-17-jdk-headless to run it)"
fi

daemon_healthy || failed=$((failed + 1))
echo "examples: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
