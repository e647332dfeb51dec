#!/usr/bin/env bash
# A three-node Konsilium federation on this machine, set up exactly the way a
# real one is: a root authority and a regional authority (RU-VLG) are created,
# three organizations run `konsilium init`, the authorities certify them, the
# generated configs are edited (listen and bootstrap addresses, relay,
# directory), and the nodes are started and watched until each has certified
# its peers.
#
#   federal   RU-MOW  certified by the root             (no bootstrap)
#   regional  RU-VLG  certified by the RU-VLG authority  bootstraps to federal over TCP
#   district  RU-VLG  certified by the RU-VLG authority  bootstraps to regional over QUIC,
#                                                         relay_via = regional
#
# Default mode: each node in its own network namespace (created here), joined
# by veth pairs to a bridge in one more namespace of its own, with addresses
# 10.77.0.1-3/24 and the template's listen addresses (0.0.0.0:7400) unchanged,
# as on three separate hosts. Needs root and iproute2. Nothing is added to the
# host's own network namespace: no bridge, route, address or firewall rule.
#
# --loopback: all nodes on 127.0.0.1 with ports BASE..BASE+2 (default
# 27401-27403), no root needed.
#
# Binaries: built with cargo (debug profile) unless KONSILIUM and
# KONSILIUM_AUTHORITY point at prebuilt ones.
#
# On exit (success, failure or Ctrl-C) the nodes are stopped, the namespaces
# deleted and the temporary directory removed (unless --keep-dir).

set -euo pipefail

usage() {
    cat <<'EOF'
Usage: deploy/local-federation.sh [--loopback] [--base-port N] [--timeout SECONDS] [--hold] [--keep-dir]

  --loopback        run all nodes on 127.0.0.1 (no root, no namespaces)
  --base-port N     first loopback port (default 27401; uses N, N+1, N+2, TCP and UDP)
  --timeout S       how long to wait for the nodes to certify each other (default 90)
  --hold            keep the federation running after the check, until Ctrl-C; a node
                    that stops (to be reconfigured) is started again on its config
  --keep-dir        keep the working directory (configs, logs, authority files)

Environment:
  KONSILIUM, KONSILIUM_AUTHORITY   prebuilt binaries (default: cargo build, debug)
EOF
}

DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$DEPLOY_DIR")
# shellcheck source=lib/konsilium-config.sh
. "$DEPLOY_DIR/lib/konsilium-config.sh"

MODE=netns
BASE_PORT=27401
TIMEOUT=90
HOLD=0
KEEP_DIR=0
while (($#)); do
    case $1 in
    --loopback) MODE=loopback ;;
    --base-port)
        if ! [[ ${2-} =~ ^[0-9]+$ ]] || ((${2} < 1024 || ${2} > 65533)); then
            kc_die "--base-port takes a port from 1024 to 65533"
        fi
        BASE_PORT=$2
        shift
        ;;
    --timeout)
        if ! [[ ${2-} =~ ^[0-9]+$ ]] || ((${2} == 0)); then
            kc_die "--timeout takes a number of seconds"
        fi
        TIMEOUT=$2
        shift
        ;;
    --hold) HOLD=1 ;;
    --keep-dir) KEEP_DIR=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        kc_die "unknown argument: $1"
        ;;
    esac
    shift
done

say() { printf '==> %s\n' "$*" >&2; }

# --- preconditions, before anything is created ------------------------------

if [[ $MODE == netns ]]; then
    command -v ip >/dev/null ||
        kc_die "the 'ip' command (iproute2) is needed for namespace mode: install iproute2, or run with --loopback"
    [[ $(id -u) == 0 ]] ||
        kc_die "namespace mode creates network namespaces and veth pairs, which needs root: run it with sudo, or run with --loopback (no root needed)"
    ip netns list >/dev/null 2>&1 ||
        kc_die "'ip netns' does not work here (no network namespace support?): run with --loopback"
else
    if command -v ss >/dev/null; then
        for port in "$BASE_PORT" "$((BASE_PORT + 1))" "$((BASE_PORT + 2))"; do
            if [[ -n $(ss -Htuln "sport = :$port") ]]; then
                kc_die "port $port (TCP or UDP) is in use on this machine: pick other ports with --base-port"
            fi
        done
    fi
fi
for tool in awk grep sed realpath mktemp; do
    command -v "$tool" >/dev/null || kc_die "'$tool' is needed and not installed"
done

kc_resolve_binaries "$REPO_ROOT"

# --- state the exit trap cleans up ------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/konsilium-federation.XXXXXX")
PIDS=()       # node processes started here (only these are ever signalled)
NAMESPACES=() # namespaces created here (only these are ever deleted)
NS_PREFIX="kfed$$"

cleanup() {
    local rc=$? ns
    trap - EXIT INT TERM
    set +e
    if ((${#PIDS[@]})); then
        say "stopping ${#PIDS[@]} node(s)"
        kc_stop_nodes "${PIDS[@]}"
    fi
    if ((${#NAMESPACES[@]})); then
        say "deleting network namespaces ${NAMESPACES[*]}"
        for ns in "${NAMESPACES[@]}"; do
            ip netns del "$ns" 2>/dev/null || printf 'warning: could not delete namespace %s\n' "$ns" >&2
        done
    fi
    if ((KEEP_DIR)); then
        say "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the federation ----------------------------------------------------------

KEYS=(federal regional district)
NAMES=("Federal medical research center (local test)"
    "Vologda regional clinical hospital (local test)"
    "Kirillov central district hospital (local test)")
LEVELS=(federal regional district)
REGIONS=(RU-MOW RU-VLG RU-VLG)
IDS=()
HOSTS=()
PORTS=()
for i in 0 1 2; do
    if [[ $MODE == netns ]]; then
        HOSTS[i]=10.77.0.$((i + 1))
        PORTS[i]=7400
    else
        HOSTS[i]=127.0.0.1
        PORTS[i]=$((BASE_PORT + i))
    fi
done

say "working directory $WORK (mode: $MODE)"
say "authorities: root, and regional RU-VLG certified by the root"
AUTH=$WORK/authority
mkdir -p "$AUTH"
# quietly LABEL COMMAND...: run COMMAND with its output in authority.log,
# shown (and the script stopped) only if it fails.
quietly() {
    local label=$1
    shift
    if ! "$@" >>"$AUTH/authority.log" 2>&1; then
        tail -n 5 "$AUTH/authority.log" >&2
        kc_die "$label failed"
    fi
}
# `init` prints the public key alone on stdout.
ROOT_KEY=$("$KONSILIUM_AUTHORITY" root init --dir "$AUTH/root" 2>>"$AUTH/authority.log") ||
    kc_die "root init failed"
VLG_KEY=$("$KONSILIUM_AUTHORITY" regional init --dir "$AUTH/RU-VLG" 2>>"$AUTH/authority.log") ||
    kc_die "regional init failed"
# An organization's certificate cannot outlive its issuer's: the authority
# gets a year, the organizations a month.
quietly "root certify-authority" "$KONSILIUM_AUTHORITY" root certify-authority \
    --root-dir "$AUTH/root" --authority "$VLG_KEY" \
    --name "Vologda regional telemedicine center (local test)" --region RU-VLG \
    --max-level regional --days 365 --serial 1 --out "$AUTH/RU-VLG.cert"

for i in 0 1 2; do
    dir=$WORK/${KEYS[i]}
    mkdir -p "$dir"
    # Exactly what an operator runs; the data dir and config are per node.
    "$KONSILIUM" init --org-name "${NAMES[i]}" --data-dir "$dir/data" --config "$dir/node.toml" \
        --root "$ROOT_KEY" --port "${PORTS[i]}" >"$dir/init.out" ||
        kc_die "konsilium init failed for ${KEYS[i]}"
    IDS[i]=$(kc_init_field "$dir/init.out" "organization id")
    sealing=$(kc_init_field "$dir/init.out" "sealing public key")
    # The federal center is certified by the root itself (no regional
    # authority covers RU-MOW here); the two Vologda hospitals by RU-VLG.
    issuer=(--issuer-dir "$AUTH/RU-VLG" --issuer-cert "$AUTH/RU-VLG.cert")
    serial=$i
    if [[ ${REGIONS[i]} == RU-MOW ]]; then
        issuer=(--issuer-dir "$AUTH/root")
        serial=2 # 1 is the RU-VLG authority's certificate: serials are unique per issuer
    fi
    quietly "certify-org for ${KEYS[i]}" "$KONSILIUM_AUTHORITY" certify-org "${issuer[@]}" \
        --org "${IDS[i]}" --sealing-key "$sealing" --name "${NAMES[i]}" --level "${LEVELS[i]}" \
        --region "${REGIONS[i]}" --days 30 --serial "$serial" --out "$dir/org.chain"
    say "${KEYS[i]}: ${IDS[i]} certified (${LEVELS[i]}, ${REGIONS[i]}, serial $serial)"
done

# Config edits on top of what `konsilium init` wrote.
cfg() { printf '%s/%s/node.toml' "$WORK" "$1"; }
for i in 0 1 2; do
    c=$(cfg "${KEYS[i]}")
    kc_set "$c" certificate "$(kc_quote "$WORK/${KEYS[i]}/org.chain")"
    if [[ $MODE == loopback ]]; then
        # Loopback only: the node is reachable from this machine alone.
        kc_set "$c" network.listen "$(kc_array "/ip4/127.0.0.1/tcp/${PORTS[i]}" "/ip4/127.0.0.1/udp/${PORTS[i]}/quic-v1")"
    fi
    # Metrics on a port of each node's own (they share loopback in that mode).
    kc_set "$c" metrics.listen "$(kc_quote "127.0.0.1:$((PORTS[i] + 1000))")"
    # Directory record records and peer events at debug, to see gossip arrive.
    kc_set "$c" level "$(kc_quote "info,konsilium=debug")"
    kc_set "$c" holidays "$(kc_array 2026-01-01 2026-01-02 2026-01-07 2026-02-23 2026-03-09 2026-05-01 2026-05-11 2026-06-12 2026-11-04)"
done

kc_set "$(cfg regional)" bootstrap \
    "$(kc_array "/ip4/${HOSTS[0]}/tcp/${PORTS[0]}/p2p/${IDS[0]}")"
kc_set "$(cfg district)" bootstrap \
    "$(kc_array "/ip4/${HOSTS[1]}/udp/${PORTS[1]}/quic-v1/p2p/${IDS[1]}")"
kc_set "$(cfg district)" relay_via "$(kc_array "${IDS[1]}")"

kc_insert_before "$(cfg federal)" "[log]" '[directory.deadlines]
urgent_hours = 12

[[directory.services]]
specialty = "cardiac-surgery"
urgencies = ["planned", "urgent", "emergency"]

[[directory.services]]
specialty = "oncology"
urgencies = ["planned", "urgent"]

[[directory.consultants]]
id = 1
name = "Dr. Anna Sokolova"
specialties = ["cardiac-surgery"]
languages = ["ru", "en"]

[[directory.consultants]]
id = 2
name = "Dr. Pavel Orlov"
specialties = ["oncology"]
languages = ["ru"]'

kc_insert_before "$(cfg regional)" "[log]" '[[directory.services]]
specialty = "cardiology"
urgencies = ["planned", "urgent", "emergency"]

[[directory.services]]
specialty = "neurology"
urgencies = ["planned", "urgent"]

[[directory.consultants]]
id = 1
name = "Dr. Ivan Petrov"
specialties = ["cardiology"]
languages = ["ru"]

[[directory.consultants]]
id = 2
name = "Dr. Maria Belova"
specialties = ["neurology"]
languages = ["ru"]'

kc_insert_before "$(cfg district)" "[log]" '[[directory.services]]
specialty = "pediatrics"
urgencies = ["planned"]

[[directory.consultants]]
id = 1
name = "Dr. Olga Smirnova"
specialties = ["pediatrics"]
languages = ["ru"]'

# --- network namespaces ------------------------------------------------------

if [[ $MODE == netns ]]; then
    HUB=$NS_PREFIX-hub
    say "namespaces: $HUB (bridge) and one per node, 10.77.0.0/24"
    ip netns add "$HUB"
    NAMESPACES+=("$HUB")
    ip -n "$HUB" link add br0 type bridge
    ip -n "$HUB" link set br0 up
    for i in 0 1 2; do
        ns=$NS_PREFIX-${KEYS[i]}
        ip netns add "$ns"
        NAMESPACES+=("$ns")
        ip -n "$ns" link set lo up
        # Both ends are created inside namespaces of ours: the host's own
        # namespace never sees an interface.
        ip -n "$HUB" link add "v-${KEYS[i]}" type veth peer name eth0 netns "$ns"
        ip -n "$HUB" link set "v-${KEYS[i]}" master br0 up
        ip -n "$ns" addr add "${HOSTS[i]}/24" dev eth0
        ip -n "$ns" link set eth0 up
    done
fi

# --- run ---------------------------------------------------------------------

strip_ansi() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }

# Starts node i (again) and records its pid; its log is appended to.
start_node() {
    local i=$1
    local log=$WORK/${KEYS[i]}/node.log
    local cmd=(env NO_COLOR=1 "$KONSILIUM" --log-format text run --config "$(cfg "${KEYS[i]}")")
    if [[ $MODE == netns ]]; then
        cmd=(ip netns exec "$NS_PREFIX-${KEYS[i]}" "${cmd[@]}")
    fi
    "${cmd[@]}" >>"$log" 2>&1 &
    PIDS[i]=$!
    say "started ${KEYS[i]} (pid $!) on ${HOSTS[i]}:${PORTS[i]}, log $log"
}

for i in 0 1 2; do
    log=$WORK/${KEYS[i]}/node.log
    start_node "$i"
    # Let the one it bootstraps to listen first, so the first dial succeeds.
    for ((t = 0; t < 100; t++)); do
        grep -qE "node started|listening" "$log" 2>/dev/null && break
        kill -0 "${PIDS[i]}" 2>/dev/null || break
        sleep 0.1
    done
done

# Who must certify whom: the bootstrap links, seen from both ends.
EXPECT=("1" "0 2" "1")

show_logs() {
    local i
    for i in 0 1 2; do
        printf '\n--- %s (last 20 lines of %s)\n' "${KEYS[i]}" "$WORK/${KEYS[i]}/node.log" >&2
        strip_ansi "$WORK/${KEYS[i]}/node.log" | tail -n 20 >&2
    done
}

say "waiting up to ${TIMEOUT}s for every node to certify its peers"
deadline=$((SECONDS + TIMEOUT))
while :; do
    done_all=1
    for i in 0 1 2; do
        if ! kill -0 "${PIDS[i]}" 2>/dev/null; then
            show_logs
            kc_die "the ${KEYS[i]} node exited early (see its log above)"
        fi
        for j in ${EXPECT[i]}; do
            strip_ansi "$WORK/${KEYS[i]}/node.log" | grep "peer certified" | grep -qF "org=${IDS[j]}" ||
                done_all=0
        done
    done
    ((done_all)) && break
    if ((SECONDS >= deadline)); then
        show_logs
        kc_die "not every node certified its peers within ${TIMEOUT}s (logs above; --keep-dir keeps them)"
    fi
    sleep 0.5
done

# The directory travels further than the direct links: give gossip a few
# seconds to bring each node the records of all three (informational).
for ((t = 0; t < 20; t++)); do
    complete=1
    for i in 0 1 2; do
        for j in 0 1 2; do
            ((i == j)) && continue
            strip_ansi "$WORK/${KEYS[i]}/node.log" | grep "RecordAccepted" | grep -qF "${IDS[j]}" || complete=0
        done
    done
    ((complete)) && break
    sleep 0.5
done

printf '\nKonsilium local federation (%s mode): all nodes certified their peers\n\n' "$MODE"
printf '%-9s %-8s %-7s %-22s %-52s %s\n' NODE LEVEL REGION ADDRESS ORGANIZATION "CERTIFIED PEERS / DIRECTORY"
for i in 0 1 2; do
    log=$WORK/${KEYS[i]}/node.log
    peers=""
    records=""
    for j in 0 1 2; do
        ((i == j)) && continue
        strip_ansi "$log" | grep "peer certified" | grep -qF "org=${IDS[j]}" && peers+="${peers:+,}${KEYS[j]}"
        strip_ansi "$log" | grep "RecordAccepted" | grep -qF "${IDS[j]}" && records+="${records:+,}${KEYS[j]}"
    done
    printf '%-9s %-8s %-7s %-22s %-52s peers: %s; records of: %s\n' "${KEYS[i]}" "${LEVELS[i]}" "${REGIONS[i]}" \
        "${HOSTS[i]}:${PORTS[i]}" "${IDS[i]}" "${peers:-none}" "${records:-none yet}"
done
printf '\nroot authority key %s\nrelay: district -> regional (%s)\n' "$ROOT_KEY" "${IDS[1]}"

# What an operator sees, through each node's admin socket.
printf '\n$ konsilium status --config %s\n' "$(cfg district)"
"$KONSILIUM" status --config "$(cfg district)" || kc_die "konsilium status failed for the district node"
printf '\n$ konsilium peers --config %s\n' "$(cfg regional)"
"$KONSILIUM" peers --config "$(cfg regional)" || kc_die "konsilium peers failed for the regional node"
printf '\n$ konsilium doctor --config %s\n' "$(cfg district)"
"$KONSILIUM" doctor --config "$(cfg district)" || kc_die "konsilium doctor found a failure on the district node"

if ((HOLD)); then
    printf '\nthe federation keeps running; logs under %s/*/node.log. Ctrl-C stops it.\n' "$WORK"
    printf 'To change a node: edit its config and run `konsilium reload --config <it>`;\n'
    printf 'or stop it (kill <pid>) and it is started again on its config, the others running on.\n'
    while :; do
        for i in 0 1 2; do
            if ! kill -0 "${PIDS[i]}" 2>/dev/null; then
                status=0
                wait "${PIDS[i]}" 2>/dev/null || status=$?
                say "the ${KEYS[i]} node stopped (exit status $status); the others keep running; starting it again in 3 s"
                sleep 3
                start_node "$i"
            fi
        done
        sleep 1
    done
fi
