#!/usr/bin/env bash
# clash.sh — a program that defines functions named like ferry's internals
# (parse_request, url_parse, buf_reserve) links against the installed
# libferry.a (no "multiple definition") and libferry.so (the library keeps
# calling its own), and its server answers the request with 200.
. "$(dirname "$0")/lib.sh"
need_prefix
d=$(scratch clash)
cc=$FERRY_CC
app=$FERRY_SRC/tests/install/app.c
static_flags=$(pkg-config --cflags --static --libs ferry | sed 's/-lferry\b/-l:libferry.a/')
# shellcheck disable=SC2086
check "link with libferry.a" $cc $FERRY_OUTSIDE_CFLAGS -DAPP_DEFINES_INTERNAL_NAMES -o "$d/clash_static" \
    "$app" $static_flags
check "its server answers 200 (libferry.a)" "$d/clash_static"
# shellcheck disable=SC2086
check "link with libferry.so" $cc $FERRY_OUTSIDE_CFLAGS -DAPP_DEFINES_INTERNAL_NAMES -o "$d/clash_shared" \
    "$app" $(pkg-config --cflags --libs ferry)
check "its server answers 200 (libferry.so)" env LD_LIBRARY_PATH="$LIBDIR" "$d/clash_shared"
exit $fail
