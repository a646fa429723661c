#!/usr/bin/env bash
# symbols.sh — only ferry's API leaves the libraries (docs/abi.md): the dynamic
# symbols of build/libferry.so, and the global symbols of the installed
# libferry.a, are exactly the functions ferry.h declares; the internal names
# (parse_request, url_parse, buf_*, ...) are local in the archive.
. "$(dirname "$0")/lib.sh"
need_prefix
d=$(scratch symbols)
so=$FERRY_BUILD/libferry.so
ar=$LIBDIR/libferry.a

# Declarations start in column 0; comments, macros and continuation lines do not.
# "void(ferry_x)(...)" declares a function a macro of the same name hides.
sed -e 's://.*$::' "$PREFIX/include/ferry.h" | grep -E '^[A-Za-z_]' | grep -v '^typedef' |
    grep -oE '\bferry_[a-z0-9_]+\)?\(' | tr -d '()' | sort -u > "$d/declared"
# What a linker puts in every shared object is not ferry's to export.
nm -D --defined-only "$so" | awk '{print $3}' |
    grep -vxE '_init|_fini|_edata|_end|__bss_start' | sort > "$d/so"
nm -g --defined-only "$ar" | awk 'NF == 3 {print $3}' | sort > "$d/a"

n=$(wc -l < "$d/declared")
[ "$n" -gt 50 ] || bad "found only $n declarations in ferry.h"
if diff -u "$d/declared" "$d/so" > "$d/so.diff"; then ok "libferry.so exports exactly the $n functions of ferry.h"
else bad "libferry.so exports differ from ferry.h (- declared only, + exported only):"; cat "$d/so.diff"; fi
if diff -u "$d/declared" "$d/a" > "$d/a.diff"; then ok "libferry.a defines exactly the $n functions of ferry.h as globals"
else bad "libferry.a globals differ from ferry.h (- declared only, + global only):"; cat "$d/a.diff"; fi
for name in parse_request url_parse buf_reserve; do
    nm "$ar" | grep -qE " t $name\$" || bad "libferry.a: $name is not a local function"
    if nm -D "$so" | grep -qE " $name\$"; then bad "libferry.so exports $name"; fi
done
[ "$(ar t "$ar")" = "ferry_all.o" ] || bad "libferry.a is not the one relocatable object: $(ar t "$ar" | tr '\n' ' ')"
exit $fail
