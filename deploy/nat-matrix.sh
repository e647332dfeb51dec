#!/usr/bin/env bash
# The NAT matrix: a federation across real network boundaries, built from
# Linux network namespaces on this machine, and a package delivered between
# every pair of hospitals.
#
#   "Internet" 198.51.100.0/24 (a bridge in a namespace of its own):
#     boot1 .11, boot2 .12   bootstrap nodes (relay, reachability probes, lookups, STUN),
#                            each with Debian's coturn beside it (TURN on port 3479)
#     federal .20            a federal center, public
#   Hospitals, each behind a NAT router of its own (WAN .101-.104, LAN 10.0.N.0/24):
#     h1  full cone         endpoint-independent mapping and filtering (snat + dnat of 7400 and every UDP port)
#     h2  port-restricted   Linux masquerade: mapping kept, replies only from where we sent
#     h3  symmetric         masquerade with random ports: a new mapping per destination
#     h4  port-restricted   a second one, so two restricted NATs meet
#
# Every node is the real `konsilium run`, configured as an operator would:
# hospitals list both bootstrap nodes and probe their own reachability.
# Between every pair of hospitals `konsilium probe` sends a sealed package
# and waits for its signed receipt; the matrix says how the connection was
# made (direct, hole-punched, relayed circuit, store-and-forward) and how
# long the first delivery took. Pairs whose NATs permit a direct path (one
# side full cone, or both port-restricted) must end up direct or
# hole-punched; every pair must deliver.
#
# Then `konsilium probe --video` opens a video link between the pair: the
# hospitals learn their mapped addresses from the bootstrap nodes' STUN
# service and hold relays on their coturn, and the matrix says where media
# went (host, srflx: the NAT's mapping from STUN, prflx: a mapping found by
# the checks, relay: through TURN) and how long the link took. Every pair
# must carry media; a symmetric NAT facing a port-restricted one leaves no
# path but the relay, and every other pair must find a path without it.
#
# Needs root, iproute2, nftables and coturn. Every address lives inside namespaces
# created here; nothing touches the host's own network namespace. On exit
# the nodes are stopped and the namespaces and working directory removed.
#
#   deploy/nat-matrix.sh [--keep-dir] [--timeout SECONDS]
#
# Binaries: KONSILIUM and KONSILIUM_AUTHORITY, or built with cargo (debug).

set -euo pipefail

DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$DEPLOY_DIR")
# shellcheck source=lib/konsilium-config.sh
. "$DEPLOY_DIR/lib/konsilium-config.sh"

KEEP_DIR=0
TIMEOUT=120
while (($#)); do
    case $1 in
    --keep-dir) KEEP_DIR=1 ;;
    --timeout)
        [[ ${2-} =~ ^[0-9]+$ ]] || kc_die "--timeout takes a number of seconds"
        TIMEOUT=$2
        shift
        ;;
    -h | --help)
        sed -n '2,30p' "$0"
        exit 0
        ;;
    *) kc_die "unknown argument: $1" ;;
    esac
    shift
done

say() { printf '==> %s\n' "$*" >&2; }

[[ $(id -u) == 0 ]] || kc_die "the NAT matrix creates network namespaces and NAT rules: run it as root"
command -v ip >/dev/null || kc_die "iproute2 ('ip') is needed"
command -v nft >/dev/null || kc_die "nftables ('nft') is needed: apt-get install nftables"
command -v python3 >/dev/null || kc_die "python3 is needed to read the nodes' JSON"
command -v turnserver >/dev/null || kc_die "coturn ('turnserver') is needed: apt-get install coturn"
kc_resolve_binaries "$REPO_ROOT"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/konsilium-nat.XXXXXX")
PIDS=()
TURN_PIDS=()
NAMESPACES=()
P="kn$$"

cleanup() {
    local rc=$? ns pid
    trap - EXIT INT TERM
    set +e
    kc_stop_nodes "${PIDS[@]}"
    for pid in "${TURN_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null; done
    if ((KEEP_DIR)); then say "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

NET=198.51.100
NODES=(boot1 boot2 federal h1 h2 h3 h4)
declare -A ADDR=([boot1]=$NET.11 [boot2]=$NET.12 [federal]=$NET.20 [h1]=10.0.1.2 [h2]=10.0.2.2 [h3]=10.0.3.2 [h4]=10.0.4.2)
declare -A NAT=([h1]=full-cone [h2]=port-restricted [h3]=symmetric [h4]=port-restricted)
declare -A LEVEL=([boot1]=regional [boot2]=regional [federal]=federal [h1]=district [h2]=district [h3]=district [h4]=district)
declare -A ID
HOSPITALS=(h1 h2 h3 h4)

# --- the network -------------------------------------------------------------

netns() {
    ip netns add "$P-$1"
    NAMESPACES+=("$P-$1")
    ip -n "$P-$1" link set lo up
}

say "namespaces: the Internet ($NET.0/24), 3 public nodes, 4 hospitals behind 4 NAT routers"
netns inet
ip -n "$P-inet" link add br0 type bridge
ip -n "$P-inet" link set br0 up
# plug NS IFACE ADDR: a veth from the Internet's bridge into NS.
plug() {
    ip -n "$P-inet" link add "v-$1" type veth peer name "$2" netns "$P-$1"
    ip -n "$P-inet" link set "v-$1" master br0 up
    ip -n "$P-$1" addr add "$3/24" dev "$2"
    ip -n "$P-$1" link set "$2" up
}
for n in boot1 boot2 federal; do
    netns "$n"
    plug "$n" eth0 "${ADDR[$n]}"
done
i=0
for h in "${HOSPITALS[@]}"; do
    i=$((i + 1))
    wan=$NET.$((100 + i))
    netns "r$i"
    plug "r$i" wan0 "$wan"
    netns "$h"
    ip -n "$P-r$i" link add lan0 type veth peer name eth0 netns "$P-$h"
    ip -n "$P-r$i" addr add "10.0.$i.1/24" dev lan0
    ip -n "$P-r$i" link set lan0 up
    ip -n "$P-$h" addr add "${ADDR[$h]}/24" dev eth0
    ip -n "$P-$h" link set eth0 up
    ip -n "$P-$h" route add default via "10.0.$i.1"
    ip netns exec "$P-r$i" sysctl -qw net.ipv4.ip_forward=1
    case ${NAT[$h]} in
    full-cone)
        rules="oifname \"wan0\" snat to $wan"
        forward="iifname \"wan0\" tcp dport 7400 dnat to ${ADDR[$h]}:7400
            iifname \"wan0\" udp dport 1024-65535 dnat to ${ADDR[$h]}"
        ;;
    port-restricted)
        rules='oifname "wan0" masquerade'
        forward=""
        ;;
    symmetric)
        rules='oifname "wan0" masquerade random'
        forward=""
        ;;
    esac
    ip netns exec "$P-r$i" nft -f - <<EOF
table ip nat {
    chain prerouting {
        type nat hook prerouting priority dstnat;
        $forward
    }
    chain postrouting {
        type nat hook postrouting priority srcnat;
        $rules
    }
}
# The router's firewall, as on any real one: nothing unsolicited comes in
# from the WAN except what a full cone forwards. Dropping (rather than
# answering) also keeps an early punched packet from leaving a conntrack
# entry behind that would make the NAT pick another port for our reply.
table inet filter {
    chain input {
        type filter hook input priority filter;
        iifname "wan0" ct state new drop
    }
    chain forward {
        type filter hook forward priority filter;
        iifname "wan0" ct state new ct status dnat accept
        iifname "wan0" ct state new drop
    }
}
EOF
done

# --- the federation ----------------------------------------------------------

AUTH=$WORK/authority
mkdir -p "$AUTH"
ROOT_KEY=$("$KONSILIUM_AUTHORITY" root init --dir "$AUTH/root" 2>>"$AUTH/log") || kc_die "root init failed"
serial=0
for n in "${NODES[@]}"; do
    dir=$WORK/$n
    mkdir -p "$dir"
    "$KONSILIUM" init --org-name "NAT matrix $n" --data-dir "$dir/data" --config "$dir/node.toml" \
        --root "$ROOT_KEY" --port 7400 >"$dir/init.out" || kc_die "konsilium init failed for $n"
    ID[$n]=$(kc_init_field "$dir/init.out" "organization id")
    sealing=$(kc_init_field "$dir/init.out" "sealing public key")
    serial=$((serial + 1))
    region=RU-VLG
    [[ $n == h* ]] || region=RU-MOW
    "$KONSILIUM_AUTHORITY" certify-org --issuer-dir "$AUTH/root" --org "${ID[$n]}" \
        --sealing-key "$sealing" --name "NAT matrix $n" --level "${LEVEL[$n]}" --region "$region" \
        --days 30 --serial "$serial" --out "$dir/org.chain" >>"$AUTH/log" 2>&1 ||
        kc_die "certify-org failed for $n (see $AUTH/log)"
    c=$dir/node.toml
    kc_set "$c" certificate "$(kc_quote "$dir/org.chain")"
    kc_set "$c" level "$(kc_quote "info,konsilium=debug,libp2p_dcutr=debug")"
done
bootstrap_of() {
    local b
    for b in "$@"; do
        printf '%s\n' "/ip4/${ADDR[$b]}/udp/7400/quic-v1/p2p/${ID[$b]}" "/ip4/${ADDR[$b]}/tcp/7400/p2p/${ID[$b]}"
    done
}
for b in boot1 boot2; do
    c=$WORK/$b/node.toml
    kc_set "$c" network.role '"bootstrap"'
    kc_set "$c" relay_server true
    kc_set "$c" external "$(kc_array "/ip4/${ADDR[$b]}/udp/7400/quic-v1" "/ip4/${ADDR[$b]}/tcp/7400")"
    kc_insert_before "$c" "[log]" "[stun]
listen = \"${ADDR[$b]}:3478\""
done
STUN=$(kc_array "${ADDR[boot1]}:3478" "${ADDR[boot2]}:3478")
# One credential for every hospital, as a federation operator might hand
# out; a node tries the servers in order.
TURN_USER=hospital
TURN_PASSWORD=nat-matrix-secret
TURN=""
for b in boot1 boot2; do
    TURN+="
[[video.turn]]
server = \"${ADDR[$b]}:3479\"
username = \"$TURN_USER\"
password = \"$TURN_PASSWORD\""
done
mapfile -t B1 < <(bootstrap_of boot1)
kc_set "$WORK/boot2/node.toml" network.bootstrap "$(kc_array "${B1[@]}")"
mapfile -t BOTH < <(bootstrap_of boot1 boot2)
for n in federal "${HOSPITALS[@]}"; do
    c=$WORK/$n/node.toml
    kc_set "$c" network.bootstrap "$(kc_array "${BOTH[@]}")"
    kc_insert_before "$c" "[log]" '[[directory.services]]
specialty = "cardiology"
urgencies = ["planned", "urgent", "emergency"]'
    kc_insert_before "$c" "[log]" "[video]
listen = \"${ADDR[$n]}:7401\"
stun = $STUN
$TURN"
done
kc_set "$WORK/federal/node.toml" external "$(kc_array "/ip4/${ADDR[federal]}/udp/7400/quic-v1" "/ip4/${ADDR[federal]}/tcp/7400")"

# --- run -----------------------------------------------------------------------

for b in boot1 boot2; do
    ip netns exec "$P-$b" turnserver -c "$DEPLOY_DIR/coturn/turnserver.conf" \
        --listening-ip="${ADDR[$b]}" --relay-ip="${ADDR[$b]}" --min-port=50000 --max-port=50999 \
        --realm=nat-matrix.konsilium --user="$TURN_USER:$TURN_PASSWORD" --userdb="$WORK/$b/turndb" \
        --pidfile="$WORK/$b/turn.pid" --log-file="$WORK/$b/turn.log" --simple-log >/dev/null 2>&1 &
    TURN_PIDS+=($!)
done
for n in "${NODES[@]}"; do
    ip netns exec "$P-$n" env NO_COLOR=1 "$KONSILIUM" --log-format text run --config "$WORK/$n/node.toml" \
        >>"$WORK/$n/node.log" 2>&1 &
    PIDS+=($!)
    [[ $n == boot* ]] && sleep 0.5
done

status() { "$KONSILIUM" status --config "$WORK/$1/node.toml" --json 2>/dev/null; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

show_logs() {
    local n
    for n in "${NODES[@]}"; do
        printf '\n--- %s (last 15 lines)\n' "$n" >&2
        tail -n 15 "$WORK/$n/node.log" >&2
    done
}

say "waiting up to ${TIMEOUT}s for every hospital to know its reachability and hold the directory"
deadline=$((SECONDS + TIMEOUT))
while :; do
    ready=1
    for h in "${HOSPITALS[@]}"; do
        s=$(status "$h") || { ready=0; continue; }
        state=$(field "'public' if d['nat']=='public' else ('private' if d['nat']=='private' and any(r['state']=='active' for r in d['reservations']) else 'waiting')" <<<"$s")
        size=$(field "d['directory_size']" <<<"$s")
        [[ $state != waiting && $size -ge 5 ]] || ready=0
    done
    ((ready)) && break
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || { show_logs; kc_die "a node exited early"; }; done
    if ((SECONDS >= deadline)); then
        show_logs
        kc_die "the hospitals did not settle within ${TIMEOUT}s"
    fi
    sleep 1
done

printf '\n%-4s %-16s %-12s %s\n' NODE NAT REACHABILITY "RELAY RESERVATIONS"
for h in "${HOSPITALS[@]}"; do
    s=$(status "$h")
    printf '%-4s %-16s %-12s %s\n' "$h" "${NAT[$h]}" "$(field "d['nat']" <<<"$s")" \
        "$(field "', '.join(r['state'] for r in d['reservations']) or '-'" <<<"$s")"
done

# A permitting pair: one side full cone (the other dials it), or two
# restricted cones (each side's mapping survives, so punched packets meet).
permits() {
    [[ ${NAT[$1]} == full-cone || ${NAT[$2]} == full-cone ]] && return 0
    [[ ${NAT[$1]} == port-restricted && ${NAT[$2]} == port-restricted ]]
}

# Whether x still holds a relayed circuit to y. Beside a direct connection
# a circuit closes within seconds: libp2p spreads requests over all of a
# peer's connections, so every other package would go through the relay.
circuit_open() {
    "$KONSILIUM" peers --config "$WORK/$1/node.toml" --json 2>/dev/null |
        field "any('relayed' in p.get('connections', []) for p in d if p['org'] == '${ID[$2]}')" 2>/dev/null ||
        echo unknown
}

printf '\n%-8s %-34s %-11s %-14s %-14s %-10s %-8s %s\n' PAIR NATS "ROUND TRIP" "LINK AT RECEIPT" "LINK SETTLED" UPGRADE CIRCUIT VERDICT
failures=0
for ((a = 0; a < ${#HOSPITALS[@]}; a++)); do
    for ((b = a + 1; b < ${#HOSPITALS[@]}; b++)); do
        x=${HOSPITALS[a]} y=${HOSPITALS[b]}
        if ! out=$("$KONSILIUM" probe --config "$WORK/$x/node.toml" "${ID[$y]}" --timeout 60 --json 2>&1); then
            printf '%-8s %-34s FAILED: %s\n' "$x-$y" "${NAT[$x]} / ${NAT[$y]}" "$out"
            failures=$((failures + 1))
            continue
        fi
        ms=$(field "'%.0f ms' % d['round_trip_ms']" <<<"$out")
        first=$(field "d['link'] or '-'" <<<"$out")
        # Hole punching follows the first relayed connection within
        # seconds; a second probe shows where the pair settled.
        sleep 3
        settled=$("$KONSILIUM" probe --config "$WORK/$x/node.toml" "${ID[$y]}" --timeout 60 --json 2>/dev/null |
            field "d['link'] or '-'" 2>/dev/null || echo failed)
        verdict=ok
        if [[ $settled == failed ]]; then
            verdict="FAILED (second delivery)"
            failures=$((failures + 1))
        elif permits "$x" "$y" && [[ $settled != direct && $settled != hole-punched ]]; then
            verdict="FAILED (NATs permit a direct path)"
            failures=$((failures + 1))
        fi
        # How long after the relayed connection the direct one came, as
        # either side saw it.
        upgrade=-
        for v in "$x:$y" "$y:$x"; do
            seen=$("$KONSILIUM" peers --config "$WORK/${v%%:*}/node.toml" --json 2>/dev/null |
                field "next((f\"{p['hole_punch_ms']:.0f} ms\" for p in d if p['org']=='${ID[${v##*:}]}' and p.get('hole_punch_ms') is not None), '')" || true)
            if [[ -n $seen ]]; then
                upgrade=$seen
                break
            fi
        done
        # The circuit that carried the first delivery, once direct.
        circuit=-
        if [[ $settled == direct || $settled == hole-punched ]]; then
            for _ in $(seq 20); do
                circuit=$(circuit_open "$x" "$y")
                [[ $circuit == False ]] && break
                sleep 0.5
            done
            case $circuit in
            True) circuit=open ;;
            False) circuit=closed ;;
            esac
            if [[ $circuit != closed && $verdict == ok ]]; then
                verdict="FAILED (a relayed circuit stayed beside the direct connection)"
                failures=$((failures + 1))
            fi
        fi
        printf '%-8s %-34s %-11s %-14s %-14s %-10s %-8s %s\n' "$x-$y" "${NAT[$x]} / ${NAT[$y]}" "$ms" "$first" "$settled" "$upgrade" "$circuit" "$verdict"
    done
done
# Media finds a path of its own unless a symmetric NAT (a new mapping per
# destination) faces a port-restricted one (which only lets in what comes
# from where it sent): that takes the TURN relay.
media_needs_relay() {
    [[ (${NAT[$1]} == symmetric && ${NAT[$2]} == port-restricted) ||
        (${NAT[$1]} == port-restricted && ${NAT[$2]} == symmetric) ]]
}

printf '\n%-8s %-34s %-8s %-24s %-10s %s\n' PAIR NATS MEDIA "TO ADDRESS" CONNECT VERDICT
for ((a = 0; a < ${#HOSPITALS[@]}; a++)); do
    for ((b = a + 1; b < ${#HOSPITALS[@]}; b++)); do
        x=${HOSPITALS[a]} y=${HOSPITALS[b]}
        if ! out=$("$KONSILIUM" probe --config "$WORK/$x/node.toml" "${ID[$y]}" --video --timeout 20 --json 2>&1); then
            printf '%-8s %-34s FAILED: %s\n' "$x-$y" "${NAT[$x]} / ${NAT[$y]}" "$out"
            failures=$((failures + 1))
            continue
        fi
        route=$(field "d['route'] or '-'" <<<"$out")
        remote=$(field "d['remote'] or '-'" <<<"$out")
        connect=$(field "'%.0f ms' % d['connect_ms']" <<<"$out")
        verdict=ok
        if ! media_needs_relay "$x" "$y" && [[ $route == relay ]]; then
            verdict="FAILED (the NATs permit a path without the relay)"
            failures=$((failures + 1))
        fi
        printf '%-8s %-34s %-8s %-24s %-10s %s\n' "$x-$y" "${NAT[$x]} / ${NAT[$y]}" "$route" "$remote" "$connect" "$verdict"
    done
done
if ((failures)); then
    show_logs
    kc_die "$failures pair(s) failed"
fi
printf 'NAT matrix: every pair delivered and carried media; every permitting pair is direct or hole-punched; media took the TURN relay only where the NATs leave no other path\n'
