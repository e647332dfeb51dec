#!/usr/bin/env bash
# Regenerates the example region in this directory with the real tools:
#
#   konsilium-authority root init / regional init / root certify-authority
#   konsilium init (one per organization), konsilium-authority certify-org
#   konsilium-authority revoke (one revoked certificate, to show revocations)
#
# then edits the configs `konsilium init` wrote the way each hospital's IT
# would (addresses, bootstrap peers, relay, [directory]) and adds comments.
# Every secret (authority keys, node keys) is created in a temporary
# directory and deleted: the example federation can be inspected and its
# configs parse and verify (see check.sh), but nobody can issue or act in it.
#
# Run it when the config template or a file format changes, or before the
# example certificates expire (about ten years from generation; check.sh
# says when). Then run check.sh.
#
#   deploy/examples/generate.sh          # builds with cargo unless
#   KONSILIUM=... KONSILIUM_AUTHORITY=... deploy/examples/generate.sh

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DEPLOY_DIR=$(dirname "$HERE")
REPO_ROOT=$(dirname "$DEPLOY_DIR")
# shellcheck source-path=SCRIPTDIR/.. source=lib/konsilium-config.sh
. "$DEPLOY_DIR/lib/konsilium-config.sh"
kc_resolve_binaries "$REPO_ROOT"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/konsilium-examples.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
A=$TMP/authority
OUT=$HERE

# --- authorities -------------------------------------------------------------

ROOT_KEY=$("$KONSILIUM_AUTHORITY" root init --dir "$A/root" 2>/dev/null)
VLG_KEY=$("$KONSILIUM_AUTHORITY" regional init --dir "$A/RU-VLG" 2>/dev/null)
"$KONSILIUM_AUTHORITY" root certify-authority --root-dir "$A/root" --authority "$VLG_KEY" \
    --name "Vologda Regional Telemedicine Center (example)" --region RU-VLG --max-level regional \
    --days 3650 --serial 1 --out "$A/RU-VLG.cert" >/dev/null 2>&1

# --- organizations -------------------------------------------------------------

declare -A ID NAME
NAME[federal]="National Medical Research Center of Cardiology and Oncology (example)"
NAME[regional]="Vologda Regional Clinical Hospital (example)"
NAME[district]="Kirillov Central District Hospital (example)"
NAME[revoked]="Belozersk Central District Hospital (example, revoked)"

# enrol KEY LEVEL REGION SERIAL ISSUER-ARGS...: `konsilium init` then certify-org,
# the way an organization and its authority do it.
enrol() {
    local key=$1 level=$2 region=$3 serial=$4
    shift 4
    local dir=$TMP/$key
    mkdir -p "$dir"
    "$KONSILIUM" init --org-name "${NAME[$key]}" --data-dir "$dir/data" --config "$dir/node.toml" \
        --root "$ROOT_KEY" >"$dir/init.out"
    ID[$key]=$(kc_init_field "$dir/init.out" "organization id")
    # Chains of the example regional authority end a day before its own
    # certificate (an organization's certificate cannot outlive its issuer's).
    "$KONSILIUM_AUTHORITY" certify-org "$@" --org "${ID[$key]}" \
        --sealing-key "$(kc_init_field "$dir/init.out" "sealing public key")" \
        --name "${NAME[$key]}" --level "$level" --region "$region" --days 3649 \
        --serial "$serial" --out "$dir/org.chain" >/dev/null 2>&1
}
VLG=(--issuer-dir "$A/RU-VLG" --issuer-cert "$A/RU-VLG.cert")
enrol federal federal RU-MOW 2 --issuer-dir "$A/root"
enrol regional regional RU-VLG 1 "${VLG[@]}"
enrol district district RU-VLG 2 "${VLG[@]}"
enrol revoked district RU-VLG 3 "${VLG[@]}"
"$KONSILIUM_AUTHORITY" revoke "${VLG[@]}" --sequence 1 --serial 3 \
    --out "$A/RU-VLG-1.notice" >/dev/null 2>&1

# --- configs ---------------------------------------------------------------------

HOLIDAYS=$(kc_array 2026-01-01 2026-01-02 2026-01-05 2026-01-06 2026-01-07 2026-01-08 \
    2026-01-09 2026-02-23 2026-03-09 2026-05-01 2026-05-11 2026-06-12 2026-11-04 2026-12-31)
HOLIDAYS_COMMENT='Here: the weekday holidays of the Russian 2026 production calendar
(check against the official one; update every December).'

# common KEY: the edits every example shares.
common() {
    local c=$TMP/$1/node.toml
    kc_set "$c" data_dir '"/var/lib/konsilium"' \
        "Here: the systemd unit's StateDirectory (deploy/systemd/konsilium.service)."
    kc_set "$c" revocations "$(kc_array revocations/RU-VLG.notice)" \
        "Here: the RU-VLG authority's current list, revoking its serial 3 (a district
hospital that closed). Every node gets every authority's notice; a newer list
from the same authority replaces the older one."
    kc_set "$c" holidays "$HOLIDAYS" "$HOLIDAYS_COMMENT"
}

header() {
    # header KEY TEXT: a comment block above what `konsilium init` wrote.
    local c=$TMP/$1/node.toml
    {
        printf '# EXAMPLE (deploy/examples, made by generate.sh): %s\n' "$2" |
            fold -s -w 78 | sed -e '2,$s/^/# /' -e 's/ *$//'
        printf '# On a real node this file is /etc/konsilium/node.toml, beside org.chain and\n'
        printf '# revocations/; data_dir holds keys/ (not part of the example).\n#\n'
        cat "$c"
    } >"$c.tmp"
    mv "$c.tmp" "$c"
}

for key in federal regional district; do common "$key"; done

# Federal center: a well-known, always-on entry point of the federation.
c=$TMP/federal/node.toml
header federal "the federal center (level 3, RU-MOW), certified directly by the root authority. It accepts escalations from every region."
kc_set "$c" external "$(kc_array /dns4/konsilium.nmrc.example.org/tcp/7400 /dns4/konsilium.nmrc.example.org/udp/7400/quic-v1)" \
    "Here: the host's public DNS name, which other nodes dial (7400/tcp and
7400/udp open in the firewall)."
kc_set "$c" bootstrap '[]' \
    "Here: none. A federal center is itself the bootstrap peer of the regional
centers; it may list other federal centers."
kc_insert_before "$c" "[log]" '# Here: tighter than the legal maxima, published in the directory.
[directory.deadlines]
urgent_hours = 12
emergency_minutes = 120
emergency_response_minutes = 20

[[directory.services]]
specialty = "cardiology"
urgencies = ["planned", "urgent", "emergency"]

[[directory.services]]
specialty = "cardiac-surgery"
urgencies = ["planned", "urgent", "emergency"]

[[directory.services]]
specialty = "pediatric-cardiology"
urgencies = ["planned", "urgent"]

[[directory.services]]
specialty = "oncology"
urgencies = ["planned", "urgent"]
# Here: this specialty commits to 3 working days for planned requests.
[directory.services.deadlines]
planned_working_days = 3

[[directory.services]]
specialty = "radiation-oncology"
urgencies = ["planned"]

[[directory.consultants]]
id = 1
name = "Dr. Anna Sokolova"
specialties = ["cardiology", "cardiac-surgery"]
languages = ["ru", "en"]

[[directory.consultants]]
id = 2
name = "Dr. Pavel Orlov"
specialties = ["pediatric-cardiology"]
languages = ["ru"]

[[directory.consultants]]
id = 3
name = "Dr. Elena Morozova"
specialties = ["oncology", "radiation-oncology"]
languages = ["ru", "en", "de"]'

# Regional center: the region's relay.
c=$TMP/regional/node.toml
header regional "the regional center of RU-VLG (level 2), certified by the RU-VLG regional authority. It is the region's relay: the district hospitals list it in network.relay_via, so their packages to other regions go through it (it stores and forwards them, seeing only the envelope header). A relay needs a stable public address, open ports and disk space for packages in transit under data_dir."
kc_set "$c" external "$(kc_array /dns4/konsilium.vokb.example.org/tcp/7400 /dns4/konsilium.vokb.example.org/udp/7400/quic-v1)" \
    "Here: the name the region's hospitals and the federal centers dial."
kc_set "$c" bootstrap "$(kc_array "/dns4/konsilium.nmrc.example.org/tcp/7400/p2p/${ID[federal]}")" \
    "Here: the federal center (its peer id is its organization id), so the first
connection is authenticated; the rest of the federation is learned from it."
kc_set "$c" relay_via '[]' \
    "Here: none, the relay itself sends packages to other regions directly."
kc_set "$c" directory_scope '"federation"' \
    "Here: the whole federation, since the region's hospitals ask their relay for
candidates in other regions."
kc_insert_before "$c" "[log]" '[[directory.services]]
specialty = "cardiology"
urgencies = ["planned", "urgent", "emergency"]

[[directory.services]]
specialty = "neurology"
urgencies = ["planned", "urgent", "emergency"]

[[directory.services]]
specialty = "general-surgery"
urgencies = ["planned", "urgent"]

[[directory.services]]
specialty = "obstetrics-gynecology"
urgencies = ["planned", "urgent", "emergency"]

[[directory.services]]
specialty = "anesthesiology-intensive-care"
urgencies = ["urgent", "emergency"]

[[directory.services]]
specialty = "radiology"
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
languages = ["ru", "en"]

[[directory.consultants]]
id = 3
name = "Dr. Sergei Volkov"
specialties = ["general-surgery", "anesthesiology-intensive-care"]
languages = ["ru"]

[[directory.consultants]]
id = 4
name = "Dr. Natalia Kuznetsova"
specialties = ["obstetrics-gynecology", "radiology"]
languages = ["ru"]'

# District hospital: mostly asks; relays through the regional center.
c=$TMP/district/node.toml
header district "a district hospital of RU-VLG (level 1), certified by the RU-VLG regional authority. Packages to other regions go through the regional center (network.relay_via)."
kc_set "$c" external "$(kc_array /ip4/203.0.113.45/tcp/7400 /ip4/203.0.113.45/udp/7400/quic-v1)" \
    "Here: the hospital's public address, whose router forwards 7400/tcp and
7400/udp to this host (203.0.113.0/24 is a documentation range: put yours)."
kc_set "$c" bootstrap "$(kc_array "/dns4/konsilium.vokb.example.org/tcp/7400/p2p/${ID[regional]}" \
    "/dns4/konsilium.vokb.example.org/udp/7400/quic-v1/p2p/${ID[regional]}")" \
    "Here: the regional center, over TCP and over QUIC (whichever the hospital's
network lets through)."
kc_set "$c" relay_via "$(kc_array "${ID[regional]}")" \
    "Here: the regional center (its organization id). Packages to organizations
in other regions go to it first; it holds and forwards them."
kc_set "$c" directory_scope '"region"' \
    "Here: a small hospital keeps only its region's records and asks the
regional center for candidates elsewhere."
kc_insert_before "$c" "[log]" '# Here: a district hospital mostly sends requests; it lists what it answers.
[[directory.services]]
specialty = "pediatrics"
urgencies = ["planned"]

[[directory.consultants]]
id = 1
name = "Dr. Olga Smirnova"
specialties = ["pediatrics"]
languages = ["ru"]'

# --- publish -----------------------------------------------------------------------

for key in federal regional district; do
    rm -rf "${OUT:?}/$key"
    mkdir -p "$OUT/$key/revocations"
    cp "$TMP/$key/node.toml" "$TMP/$key/org.chain" "$OUT/$key/"
    cp "$A/RU-VLG-1.notice" "$OUT/$key/revocations/RU-VLG.notice"
done
mkdir -p "$OUT/authority"
cp "$A/RU-VLG.cert" "$OUT/authority/RU-VLG.cert"
cp "$A/RU-VLG-1.notice" "$OUT/authority/RU-VLG-1.notice"
{
    printf '# The example federation (public facts only; its secret keys were discarded).\n'
    printf '# Generated %s by deploy/examples/generate.sh.\n\n' "$(date -u +%Y-%m-%dT%H:%MZ)"
    printf 'root authority key       %s   (federation.roots)\n' "$ROOT_KEY"
    printf 'RU-VLG authority key     %s   (authority/RU-VLG.cert, root serial 1)\n\n' "$VLG_KEY"
    printf '%-9s %-9s %-7s %-6s %-52s %s\n' example level region serial "organization id (= peer id)" name
    printf '%-9s %-9s %-7s %-6s %-52s %s\n' federal federal RU-MOW "2 root" "${ID[federal]}" "${NAME[federal]}"
    printf '%-9s %-9s %-7s %-6s %-52s %s\n' regional regional RU-VLG "1 VLG" "${ID[regional]}" "${NAME[regional]}"
    printf '%-9s %-9s %-7s %-6s %-52s %s\n' district district RU-VLG "2 VLG" "${ID[district]}" "${NAME[district]}"
    printf '%-9s %-9s %-7s %-6s %-52s %s\n' - district RU-VLG "3 VLG" "${ID[revoked]}" "${NAME[revoked]} (revoked by authority/RU-VLG-1.notice)"
} >"$OUT/federation.txt"
printf 'wrote the example region to %s; now run %s/check.sh\n' "$OUT" "$OUT"
