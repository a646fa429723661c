#!/usr/bin/env bash
# cmake.sh — tests/install/cmake_app: a CMake project outside the tree with
# find_package(ferry CONFIG REQUIRED), one program on ferry::ferry and one on
# ferry::ferry_static; both run a server and a request in one loop.
. "$(dirname "$0")/lib.sh"
need_prefix
d=$(scratch cmake)
# shellcheck disable=SC2086
check "cmake configure (find_package(ferry CONFIG REQUIRED))" \
    cmake -S "$FERRY_SRC/tests/install/cmake_app" -B "$d" -DCMAKE_PREFIX_PATH="$PREFIX" \
    -DCMAKE_C_COMPILER="$FERRY_CC" -DCMAKE_C_FLAGS="$FERRY_OUTSIDE_CFLAGS" -DCMAKE_BUILD_TYPE=Debug
check "cmake --build" cmake --build "$d" -j 2
# ferry::ferry carries the prefix's lib directory as the build RPATH.
check "app on ferry::ferry runs" "$d/app"
check "app on ferry::ferry_static runs" "$d/app_static"
readelf -d "$d/app" | grep -q 'NEEDED.*\[libferry\.so\.0\]' || bad "app does not need libferry.so.0"
if readelf -d "$d/app_static" | grep -q 'libferry'; then bad "app_static needs a libferry.so"; fi
exit $fail
