#!/usr/bin/env bash
# pkgconfig.sh — tests/install/app.c built outside the tree against the
# installed ferry with pkg-config, as README shows: once shared
# (`pkg-config --cflags --libs ferry`), once static (`--static --libs`, with
# the archive named, since -lferry prefers the .so beside it). Each runs a
# server and a request in one loop.
. "$(dirname "$0")/lib.sh"
need_prefix
d=$(scratch pkgconfig)
cc=$FERRY_CC
# shellcheck disable=SC2086 # flag lists
check "cc app.c \$(pkg-config --cflags --libs ferry)" \
    $cc $FERRY_OUTSIDE_CFLAGS -o "$d/app" "$FERRY_SRC/tests/install/app.c" $(pkg-config --cflags --libs ferry)
readelf -d "$d/app" | grep -q 'NEEDED.*\[libferry\.so\.0\]' || bad "app does not need libferry.so.0"
check "app (shared) runs" env LD_LIBRARY_PATH="$LIBDIR" "$d/app"

# README's line, word for word
static_flags=$(pkg-config --cflags --static --libs ferry | sed 's/-lferry\b/-l:libferry.a/')
# shellcheck disable=SC2086
check "cc app.c \$(pkg-config --cflags --static --libs ferry | sed 's/-lferry\\b/-l:libferry.a/')" \
    $cc $FERRY_OUTSIDE_CFLAGS -o "$d/app_static" "$FERRY_SRC/tests/install/app.c" $static_flags
if readelf -d "$d/app_static" | grep -q 'libferry'; then bad "app_static needs a libferry.so"; fi
check "app (static) runs" "$d/app_static"
exit $fail
