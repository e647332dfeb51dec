#!/usr/bin/env bash
# Checks the example region with the real binaries; sends no network traffic
# and leaves nothing running or written outside a temporary directory.
#
# For each of federal/, regional/, district/:
#  1. `konsilium-authority inspect org.chain --root <its federation.roots>`
#     accepts the chain, and it is for the organization id in the config's
#     header; the revocation notice is intact and from the RU-VLG authority.
#  2. The config, verbatim except data_dir (an empty temporary directory),
#     parses: `konsilium run` gets past the parser and stops at the first
#     thing it does next, loading keys/ ("key file not found").
#  3. With throwaway keys in that data dir (the example's own were never
#     kept), and listen on 127.0.0.1 port 0 and no bootstrap peers as a
#     safety net, `konsilium run` loads the certificate and the revocation
#     notice, verifies the chain against the roots, and stops only because
#     the keys are not the certified organization's ("does not match the
#     certificate"). With the real keys the node would start.
# Also: bootstrap and relay_via peer ids point at the other examples.
#
#   deploy/examples/check.sh             # builds with cargo unless
#   KONSILIUM=... KONSILIUM_AUTHORITY=... deploy/examples/check.sh

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DEPLOY_DIR=$(dirname "$HERE")
REPO_ROOT=$(dirname "$DEPLOY_DIR")
# shellcheck source-path=SCRIPTDIR/.. source=lib/konsilium-config.sh
. "$DEPLOY_DIR/lib/konsilium-config.sh"
kc_resolve_binaries "$REPO_ROOT"
command -v timeout >/dev/null || kc_die "'timeout' (coreutils) is needed"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/konsilium-examples-check.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

FAILED=0
pass() { printf 'ok    %s\n' "$*"; }
fail() {
    printf 'FAIL  %s\n' "$*"
    FAILED=1
}

# run_node CONFIG: `konsilium run`, which must fail on its own within 30 s;
# prints its stderr. A node that is still running then is killed (and that
# is a failure: the checks are built so that it never gets that far).
run_node() {
    local rc=0
    # shellcheck disable=SC2069 # stderr to the caller, stdout discarded
    NO_COLOR=1 timeout -s KILL 30 "$KONSILIUM" run --config "$1" 2>&1 >/dev/null || rc=$?
    if ((rc == 0 || rc == 137)); then
        printf '(the node did not stop by itself: exit status %s)\n' "$rc"
    fi
}

declare -A ID
for key in federal regional district; do
    ID[$key]=$(sed -n 's/^# Organization id: //p' "$HERE/$key/node.toml")
done

for key in federal regional district; do
    ex=$HERE/$key
    root=$(kc_get "$ex/node.toml" roots | sed 's/^\["\([0-9a-f]*\)".*/\1/')

    # 1. Certificate chain and revocation notice.
    if out=$("$KONSILIUM_AUTHORITY" inspect "$ex/org.chain" --root "$root" 2>&1); then
        if grep -qE "^ +id +${ID[$key]}$" <<<"$out"; then
            pass "$key: org.chain verifies against the root in federation.roots, for ${ID[$key]}"
        else
            fail "$key: org.chain is not for the organization id in node.toml's header"
        fi
    else
        fail "$key: org.chain refused: $(tail -n 3 <<<"$out")"
    fi
    if out=$("$KONSILIUM_AUTHORITY" inspect "$ex/revocations/RU-VLG.notice" --root "$root" 2>&1); then
        pass "$key: revocations/RU-VLG.notice verifies"
    else
        fail "$key: revocations/RU-VLG.notice refused: $(tail -n 3 <<<"$out")"
    fi

    # 2. The config as written parses.
    work=$TMP/$key
    cp -r "$ex" "$work"
    mkdir -p "$work/data"
    kc_set "$work/node.toml" data_dir "$(kc_quote "$work/data")"
    out=$(run_node "$work/node.toml")
    if grep -q "key file not found" <<<"$out"; then
        pass "$key: node.toml parses (konsilium run stops at the missing keys)"
    else
        fail "$key: node.toml: $out"
    fi

    # 3. Certificate, revocations and roots load and verify.
    "$KONSILIUM" init --org-name "throwaway" --data-dir "$work/data" --config "$TMP/$key-throwaway.toml" \
        --root "$root" >/dev/null
    kc_set "$work/node.toml" network.listen "$(kc_array /ip4/127.0.0.1/tcp/0)"
    kc_set "$work/node.toml" bootstrap '[]'
    kc_set "$work/node.toml" external '[]'
    out=$(run_node "$work/node.toml")
    if grep -q "does not match the certificate" <<<"$out" && grep -qF "certificate is for ${ID[$key]}" <<<"$out"; then
        pass "$key: konsilium run loads and verifies org.chain and the notice (stops at the throwaway keys)"
    else
        fail "$key: konsilium run: $out"
    fi
done

# Cross-references between the examples.
if grep -qF "/p2p/${ID[federal]}\"" <(kc_get "$HERE/regional/node.toml" bootstrap); then
    pass "regional: bootstraps to the federal center"
else
    fail "regional: bootstrap is not the federal center's peer id"
fi
if grep -qF "/p2p/${ID[regional]}\"" <(kc_get "$HERE/district/node.toml" bootstrap); then
    pass "district: bootstraps to the regional center"
else
    fail "district: bootstrap is not the regional center's peer id"
fi
if [[ $(kc_get "$HERE/district/node.toml" relay_via) == "[\"${ID[regional]}\"]" ]]; then
    pass "district: relay_via is the regional center"
else
    fail "district: relay_via is not the regional center's id"
fi

if ((FAILED)); then
    printf '\nsome checks failed (if the example certificates expired, rerun generate.sh)\n'
    exit 1
fi
printf '\nall example checks passed\n'
