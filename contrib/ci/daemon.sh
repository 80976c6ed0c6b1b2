# Sourced by the scripts here: starts a throwaway `meterd run` on loopback for them.
#
#   start_daemon BIN        sets $work (temp dir, removed on exit), $addr (host:port),
#                           $METERD_TOKEN (exported; the daemon requires it) and $instance
#                           (registered with the example plan `calls`, started two days ago)
#
# The config is fixtures/meterd.example.toml with `server.token_env` set, so every protected
# route needs the token. The daemon is stopped (SIGTERM, then waited for) when the script exits.

daemon_pid=""
work=$(mktemp -d /tmp/meterd-ci.XXXXXX)
stop_daemon() {
  if [ -n "$daemon_pid" ]; then kill -TERM "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
  daemon_pid=""
}
trap 'stop_daemon; rm -rf "$work"' EXIT

# The meterd binary: the argument, else the release build, else the debug build.
find_bin() {
  local bin="${1:-}"
  if [ -z "$bin" ]; then
    for b in target/release/meterd target/debug/meterd; do [ -x "$b" ] && { bin=$b; break; }; done
  fi
  [ -n "$bin" ] && [ -x "$bin" ] || { echo "no meterd binary (build it, or pass its path)" >&2; return 2; }
  echo "$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
}

start_daemon() {
  local bin=$1
  sed 's/^# token_env = "METERD_TOKEN".*/token_env = "METERD_TOKEN"/' fixtures/meterd.example.toml >"$work/meterd.toml"
  grep -q '^token_env = "METERD_TOKEN"' "$work/meterd.toml" || { echo "could not set token_env in the config" >&2; return 2; }
  export METERD_TOKEN="ci-$RANDOM$RANDOM$RANDOM"
  instance=7f141bf1-aec8-4859-8323-fb3a8ad50721
  local m=("$bin" --config "$work/meterd.toml" --db "$work/meterd.db")
  "${m[@]}" instance add "$instance" --plan calls --start "$(date -u -d '-2 days' +%Y-%m-%dT00:00:00Z)" >/dev/null
  # A stop-before-excess instance whose package (quota 1 call) the first event uses up: the
  # clients must pass the store's `quota_exhausted` on ("stop its service").
  printf '\n[[plan]]\nname = "calls-prepaid"\nfactor = "api_calls"\nunit = "call"\nperiod = "hour"\npricing = "fixed"\nprice = "0.002"\npackage = "stop"\n' >>"$work/meterd.toml"
  prepaid=0b8c6a3e-5d1f-4e2a-9c7b-1a2b3c4d5e6f
  "${m[@]}" instance add "$prepaid" --plan calls-prepaid --start "$(date -u -d '-2 days' +%Y-%m-%dT00:00:00Z)" >/dev/null
  "${m[@]}" package add "$prepaid" pkg-ci-1 --quota 1 --from "$(date -u -d '-2 days' +%Y-%m-%dT00:00:00Z)" \
    --to "$(date -u -d '+30 days' +%Y-%m-%dT00:00:00Z)" >/dev/null
  RUST_LOG=warn "${m[@]}" run --listen 127.0.0.1:0 >"$work/daemon.stdout" 2>"$work/daemon.stderr" &
  daemon_pid=$!
  addr=""
  for _ in $(seq 200); do
    addr=$(sed -n 's|^meterd listening on http://||p' "$work/daemon.stdout" | head -1)
    [ -n "$addr" ] && return 0
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "meterd run did not start:" >&2
  cat "$work/daemon.stderr" >&2
  return 2
}

# Fails when the daemon died or logged an ERROR (a handler panic, a store failure).
daemon_healthy() {
  if ! kill -0 "$daemon_pid" 2>/dev/null; then
    echo "meterd run died:" >&2
    cat "$work/daemon.stderr" >&2
    return 1
  fi
  if grep -q 'ERROR' "$work/daemon.stderr"; then
    echo "meterd logged errors:" >&2
    grep 'ERROR' "$work/daemon.stderr" | head -20 >&2
    return 1
  fi
}
