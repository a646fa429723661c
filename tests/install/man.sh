#!/usr/bin/env bash
# man.sh — the installed man pages: each renders with `man -l` and with groff
# with every warning on, and a warning is a failure; each command's page has an
# option entry for every flag in its flag table (tools/ferry/*.c) and none for
# a flag that is not there; ferry(1) names every command `ferry help` lists.
. "$(dirname "$0")/lib.sh"
need_prefix
mandir=$PREFIX/$FERRY_MANDIR/man1
tools=$FERRY_SRC/tools/ferry
export MANWIDTH=80 LC_ALL=C.UTF-8

for page in ferry ferry-serve ferry-fetch ferry-bench; do
    f=$mandir/$page.1
    [ -f "$f" ] || { bad "$page(1) not installed"; continue; }
    err=$(groff -man -Tutf8 -ww -z "$f" 2>&1) && [ -z "$err" ] || { bad "$page(1): groff: $err"; continue; }
    out=$(man --warnings=w -l "$f" 2>"$FERRY_TEST_DIR/man.err")
    err=$(cat "$FERRY_TEST_DIR/man.err")
    if [ -n "$err" ] || ! grep -q '^NAME' <<< "$out" || ! grep -q "$page" <<< "$out"; then
        bad "$page(1): man -l: ${err:-no NAME section}"; continue
    fi
    ok "$page(1) renders without a warning ($(wc -l <<< "$out") lines)"
done

# the flags of a table: every "-x"/"--xyz" string between its opening and "};"
table_flags() { sed -n "/$2\[\] = {/,/^};/p" "$1" | grep -oE '"--?[A-Za-z][A-Za-z-]*"' | tr -d '"' | sort -u; }
# the flags a page documents: those in the tag line of each .TP entry
page_flags() {
    awk 'tag { print; tag = 0 } /^\.TP/ { tag = 1 }' "$1" | sed 's/\\-/-/g' |
        grep -oE '(^|[ "])--?[A-Za-z][A-Za-z-]*' | tr -d ' "' | sort -u
}
for cmd in serve fetch bench; do
    table=specs
    [ "$cmd" = serve ] && table=opt_specs
    want=$(table_flags "$tools/$cmd.c" "$table")
    [ "$(wc -l <<< "$want")" -ge 10 ] || { bad "found no flag table in $cmd.c"; continue; }
    have=$(page_flags "$mandir/ferry-$cmd.1")
    missing=$(comm -23 <(echo "$want") <(echo "$have"))
    extra=$(comm -13 <(echo "$want") <(echo "$have"))
    if [ -z "$missing$extra" ]; then ok "ferry-$cmd(1) documents the $(wc -l <<< "$want") flags of $cmd.c"
    else bad "ferry-$cmd(1): undocumented flags: ${missing//$'\n'/ }; flags $cmd.c does not have: ${extra//$'\n'/ }"; fi
done
cmds=$("$FERRY_BUILD/ferry" help | awk '/^commands:/ { c = 1; next } c && NF { print $1 }')
have=$(awk 'tag { print; tag = 0 } /^\.TP/ { tag = 1 }' "$mandir/ferry.1" | grep -oE '^\.BR? [a-z]+' | awk '{ print $2 }')
for c in $cmds; do grep -qx "$c" <<< "$have" || bad "ferry(1) has no entry for '$c'"; done
[ -n "$cmds" ] && [ "$fail" = 0 ] && ok "ferry(1) has an entry for each command: $(echo $cmds)"
exit $fail
