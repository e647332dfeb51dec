# Finds uncommented `KEY = ...` lines of a TOML file for konsilium-config.sh.
# ENVIRON["KC_KEY"] is `key` (any table) or `table.key` (only in [table];
# `directory.services` style sub-tables count as their own tables).
# mode=count prints how many lines match; mode=get prints the matching
# value; mode=set prints the file with the match replaced by
# `key = ENVIRON["KC_VALUE"]`, preceded by ENVIRON["KC_COMMENT"] as comments.
BEGIN {
    want = ENVIRON["KC_KEY"]
    table = ""
    key = want
    dot = index(want, ".")
    if (dot > 0) {
        table = substr(want, 1, dot - 1)
        key = substr(want, dot + 1)
    }
    current = ""
    n = 0
}
/^\[\[?[^]]+\]\]?[ \t]*$/ {
    current = $0
    gsub(/^\[+|\]+[ \t]*$/, "", current)
}
{
    hit = index($0, key " = ") == 1 && (table == "" || current == table)
    if (hit) n++
    if (mode == "get" && hit) {
        print substr($0, length(key " = ") + 1)
    }
    if (mode == "set") {
        if (hit) {
            if (ENVIRON["KC_COMMENT"] != "") {
                c = split(ENVIRON["KC_COMMENT"], lines, "\n")
                for (i = 1; i <= c; i++) print (lines[i] == "" ? "#" : "# " lines[i])
            }
            print key " = " ENVIRON["KC_VALUE"]
        } else {
            print
        }
    }
}
END {
    if (mode == "count") print n
}
