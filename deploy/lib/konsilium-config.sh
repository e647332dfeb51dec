# shellcheck shell=bash
# Helpers shared by deploy/local-federation.sh and deploy/examples/generate.sh
# for editing the config that `konsilium init` writes (config::template in
# node/src/config/template.rs), instead of keeping a second copy of that template here.
#
# Every edit checks that it changed exactly what it meant to: if the template
# is reworded and a key moves or disappears, the scripts stop with a message
# naming the key instead of producing a config that silently lacks it. The
# node itself is the final judge: the scripts run `konsilium run` on what they
# wrote, and its parser names the field of any mistake.
#
# Source this file; it defines functions only and changes no shell options.

KC_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# kc_die MESSAGE...: print to stderr and exit.
kc_die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# kc_quote VALUE: VALUE as a TOML basic string. Refuses quotes, backslashes
# and control characters rather than escaping them: nothing these scripts
# write needs them, and refusing keeps the awk below trivially correct.
kc_quote() {
    local v=$1
    # shellcheck disable=SC1003 # a backslash in single quotes, as meant
    case $v in
    *'"'* | *'\'* | *[[:cntrl:]]*) kc_die "cannot put ${v@Q} in a config: no quotes, backslashes or control characters" ;;
    esac
    printf '"%s"' "$v"
}

# kc_array VALUE...: the values as a one-line TOML array of strings.
kc_array() {
    local out="" v
    for v in "$@"; do
        out+="${out:+, }$(kc_quote "$v")"
    done
    printf '[%s]' "$out"
}

# kc_lines FILE KEY: how many uncommented `KEY = ...` lines FILE has. KEY
# may name its table, `network.listen`, to tell it from `metrics.listen`.
kc_lines() {
    KC_KEY=$2 awk -f "$KC_LIB_DIR/kc-match.awk" -v mode=count "$1"
}

# kc_set FILE KEY VALUE [COMMENT]: replace the one uncommented `KEY = ...`
# line of FILE with `KEY = VALUE` (VALUE is TOML, e.g. from kc_quote or
# kc_array). COMMENT, if given, is inserted above it as `# ` lines (one per
# line of COMMENT). Fails unless exactly one such line exists.
kc_set() {
    local file=$1 key=$2 value=$3 comment=${4-} n
    n=$(kc_lines "$file" "$key")
    [[ $n == 1 ]] || kc_die "$file: expected exactly one '${key} = ' line, found $n (has the config template changed?)"
    KC_KEY=$key KC_VALUE=$value KC_COMMENT=$comment \
        awk -f "$KC_LIB_DIR/kc-match.awk" -v mode=set "$file" >"$file.tmp" && mv "$file.tmp" "$file"
}

# kc_get FILE KEY: the raw TOML value of the one uncommented `KEY = ...` line.
kc_get() {
    local file=$1 key=$2 n
    n=$(kc_lines "$file" "$key")
    [[ $n == 1 ]] || kc_die "$file: expected exactly one '${key} = ' line, found $n"
    KC_KEY=$key awk -f "$KC_LIB_DIR/kc-match.awk" -v mode=get "$file"
}

# kc_insert_before FILE LINE TEXT: insert TEXT (any number of lines) before
# the one line of FILE that is exactly LINE (e.g. "[log]"), followed by an
# empty line. Used to add [directory] sub-tables, which must come after the
# plain [directory] keys and before the next top-level table.
kc_insert_before() {
    local file=$1 line=$2 text=$3 n
    n=$(grep -cxF -- "$line" "$file" || true)
    [[ $n == 1 ]] || kc_die "$file: expected exactly one line '$line', found $n (has the config template changed?)"
    KC_LINE=$line KC_TEXT=$text awk '
        $0 == ENVIRON["KC_LINE"] { print ENVIRON["KC_TEXT"]; print "" }
        { print }
    ' "$file" >"$file.tmp" && mv "$file.tmp" "$file"
}

# kc_init_field FILE LABEL: a value from the output of `konsilium init`, e.g.
# kc_init_field init.out "organization id" or "sealing public key".
kc_init_field() {
    local v
    v=$(awk -v label="$2" 'index($0, label ":") == 1 { sub(/^[^:]*:[ \t]*/, ""); print; exit }' "$1")
    [[ -n $v ]] || kc_die "$1: no '$2:' line in the output of konsilium init (has its output changed?)"
    printf '%s' "$v"
}

# kc_stop_nodes PID...: stops node processes started by the caller: SIGINT
# (what `konsilium run` takes as "shut down cleanly"), up to 10 s to exit,
# then SIGKILL for any still running, each named on stderr.
kc_stop_nodes() {
    local pid i alive
    for pid in "$@"; do kill -INT "$pid" 2>/dev/null; done
    for ((i = 0; i < 50; i++)); do
        alive=0
        for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.2
    done
    for pid in "$@"; do
        if kill -0 "$pid" 2>/dev/null; then
            printf 'node pid %s did not stop within 10 s; killing it\n' "$pid" >&2
            kill -KILL "$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null
    done
    return 0
}

# kc_resolve_binaries REPO_ROOT: sets KONSILIUM and KONSILIUM_AUTHORITY. When
# both are already set (prebuilt binaries, e.g. a release build or the ones in
# a package), they are only checked; otherwise the two crates are built in
# debug mode with cargo (fast to compile; the dev profile already optimises
# the crypto dependencies) and taken from the target directory.
kc_resolve_binaries() {
    local root=$1 target
    if [[ -n ${KONSILIUM-} && -n ${KONSILIUM_AUTHORITY-} ]]; then
        :
    elif [[ -n ${KONSILIUM-} || -n ${KONSILIUM_AUTHORITY-} ]]; then
        kc_die "set both KONSILIUM and KONSILIUM_AUTHORITY (prebuilt binaries), or neither (build with cargo)"
    else
        command -v cargo >/dev/null || kc_die "cargo not found: install Rust, or set KONSILIUM and KONSILIUM_AUTHORITY to prebuilt binaries"
        [[ -f $root/Cargo.toml ]] || kc_die "$root is not the Konsilium source tree: set KONSILIUM and KONSILIUM_AUTHORITY to prebuilt binaries"
        printf 'building konsilium and konsilium-authority (cargo build -p konsilium-node -p konsilium-bootstrap) ...\n' >&2
        (cd "$root" && cargo build -q -p konsilium-node -p konsilium-bootstrap) || kc_die "cargo build failed"
        target=${CARGO_TARGET_DIR:-$root/target}
        [[ $target == /* ]] || target=$root/$target
        KONSILIUM=$target/debug/konsilium
        KONSILIUM_AUTHORITY=$target/debug/konsilium-authority
    fi
    local b
    for b in "$KONSILIUM" "$KONSILIUM_AUTHORITY"; do
        [[ -x $b ]] || kc_die "$b is not an executable file"
    done
    # Absolute, so they still work after a cd or inside `ip netns exec`.
    KONSILIUM=$(realpath "$KONSILIUM")
    KONSILIUM_AUTHORITY=$(realpath "$KONSILIUM_AUTHORITY")
    export KONSILIUM KONSILIUM_AUTHORITY
}
