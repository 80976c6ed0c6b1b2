#!/usr/bin/env bash
# Runs schemathesis (PyPI) against a live `meterd run` on loopback with schemas/openapi.json
# (issue 17): no 5xx, every answer conforms to the document (status code, content type,
# headers, body schema), nothing the document calls invalid is accepted, and the bearer token
# is not ignored. Bounded: a fixed number of examples per operation, a time budget, and a hard
# timeout. Any finding fails (exit 1); a setup failure exits 2.
#
#   contrib/ci/schemathesis.sh [PATH_TO_METERD]    (default: target/release/meterd, else debug)
#
# Knobs: ST_MAX_EXAMPLES (default 40), ST_MAX_TIME (seconds, default 60), ST_SEED (default
# random; the run prints it so a finding can be replayed with ST_SEED=…).
set -euo pipefail
cd "$(dirname "$0")/../.."

. contrib/ci/daemon.sh
bin=$(find_bin "${1:-}") || exit 2

# The pinned schemathesis, from PyPI, in its own virtual environment (kept under target/, so a
# second run reuses it).
ST_VERSION=4.32.5
venv=$(realpath -m "${ST_VENV:-${CARGO_TARGET_DIR:-target}/schemathesis-venv}")
if [ ! -x "$venv/bin/st" ] || [ "$("$venv/bin/st" --version 2>/dev/null | awk '{print $NF}')" != "$ST_VERSION" ]; then
  echo "installing schemathesis $ST_VERSION into $venv"
  python3 -m venv "$venv" || { echo "schemathesis.sh: python3 -m venv failed (install python3-venv)" >&2; exit 2; }
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "schemathesis==$ST_VERSION" || exit 2
fi
st_cmd=("$venv/bin/st")

# The instance the document's examples name is registered, so that the examples phase reaches
# the success answers too.
start_daemon "$bin" || exit 2

seed="${ST_SEED:-$RANDOM}"
max_time="${ST_MAX_TIME:-60}"
echo "schemathesis $ST_VERSION against meterd on $addr (seed $seed, ${ST_MAX_EXAMPLES:-40} examples per operation, ${max_time}s budget)"
set +e
# From the temp dir, where schemathesis keeps its replay cache (.schemathesis/).
repo=$PWD
cd "$work"
timeout --kill-after=10 $((max_time + 60)) "${st_cmd[@]}" run "$repo/schemas/openapi.json" \
  --url "http://$addr" \
  -H "Authorization: Bearer $METERD_TOKEN" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,ignored_auth \
  --phases examples,coverage,fuzzing \
  --max-examples "${ST_MAX_EXAMPLES:-40}" \
  --max-time "$max_time" \
  --seed "$seed" \
  --workers 1 \
  --request-timeout 10 \
  --generation-database none \
  --no-color
rc=$?
set -e
daemon_healthy || rc=1
case $rc in
  0) echo "schemathesis: no findings" ;;
  124|137) echo "schemathesis.sh: schemathesis passed its hard timeout" >&2; exit 1 ;;
  *) echo "schemathesis.sh: findings above (replay with ST_SEED=$seed)" >&2; exit 1 ;;
esac
