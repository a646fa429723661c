#!/usr/bin/env bash
# abi.sh OLD_PROGRAM LIBDIR GROWN_LIBDIR — the ABI promise (docs/abi.md): a
# program built against ferry 0.1.0's header (abi_old.c) runs on today's
# libferry.so.0 and on one whose options structs have grown.
set -u
prog=$1 libdir=$2 grown=$3
fail=0
for dir in "$libdir" "$grown"; do
    # the dynamic linker must really pick this directory's libferry.so.0
    if ! LD_LIBRARY_PATH=$dir ldd "$prog" | grep -q "libferry.so.0 => $dir/libferry.so.0 "; then
        echo "FAIL $prog does not load $dir/libferry.so.0:"; LD_LIBRARY_PATH=$dir ldd "$prog"; fail=1; continue
    fi
    if out=$(LD_LIBRARY_PATH=$dir "$prog" 2>&1); then echo "ok   on $dir/libferry.so.0: $out"
    else echo "FAIL on $dir/libferry.so.0:"; echo "$out"; fail=1; fi
done
exit $fail
