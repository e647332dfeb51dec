#!/usr/bin/env bash
# Checks `local-federation.sh --hold`: a node stopped to be reconfigured is
# started again on its config while the others keep running, and it rejoins.
# Needs KONSILIUM and KONSILIUM_AUTHORITY like local-federation.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
bash deploy/local-federation.sh --loopback --hold --timeout 120 >"$log" 2>&1 &
script=$!
stop() { kill -TERM "$script" 2>/dev/null; wait "$script" 2>/dev/null || true; rm -f "$log"; }
trap stop EXIT
fail() { echo "hold check: $*" >&2; cat "$log" >&2; stop; trap - EXIT; exit 1; }
for _ in $(seq 150); do
    grep -q "keeps running" "$log" && break
    kill -0 "$script" 2>/dev/null || fail "the federation did not come up"
    sleep 1
done
grep -q "keeps running" "$log" || fail "the federation did not come up in time"
pid=$(sed -n 's/.*started district (pid \([0-9]*\)).*/\1/p' "$log" | head -1)
work=$(sed -n 's/.*logs under \(.*\)\/\*\/node.log.*/\1/p' "$log" | head -1)
[[ -n $pid && -n $work ]] || fail "cannot find the district node's pid or the work directory"
kill -TERM "$pid"
for _ in $(seq 60); do
    [[ $(grep -c "started district" "$log") -ge 2 ]] && break
    sleep 1
done
[[ $(grep -c "started district" "$log") -ge 2 ]] || fail "the district node was not started again"
kill -0 "$script" 2>/dev/null || fail "stopping one node took the federation down"
for _ in $(seq 60); do
    peers=$("$KONSILIUM" status --config "$work/district/node.toml" --json 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["peers_connected"])' 2>/dev/null || echo 0)
    ((peers >= 1)) && break
    sleep 1
done
((peers >= 1)) || fail "the restarted district node did not rejoin"
echo "hold check: the district node was stopped, started again on its config and rejoined; the others kept running"
trap - EXIT
stop
