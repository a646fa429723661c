#!/usr/bin/env bash
# install_tree.sh — cmake --install into a fresh prefix (the other install_*
# tests build against it): every file where the layout says, the SONAME and
# its links, ferry.pc with the real prefix, the installed CLI, a DESTDIR
# staging install, and the uninstall script emptying it again.
. "$(dirname "$0")/lib.sh"
rm -rf "$FERRY_TEST_DIR" && mkdir -p "$FERRY_TEST_DIR"
# cmake --install rewrites build/install_manifest.txt; `make uninstall` keeps
# its own list (build/installed_files.txt), which this leaves alone.
check "cmake --install --prefix $PREFIX" cmake --install "$FERRY_BUILD" --prefix "$PREFIX"

V=$FERRY_VERSION
MAJOR=${V%%.*}
for f in include/ferry.h "$FERRY_LIBDIR/libferry.a" "$FERRY_LIBDIR/libferry.so.$V" \
         "$FERRY_LIBDIR/pkgconfig/ferry.pc" "$FERRY_LIBDIR/cmake/ferry/ferryConfig.cmake" \
         "$FERRY_LIBDIR/cmake/ferry/ferryConfigVersion.cmake" bin/ferry \
         share/doc/ferry/README.md share/doc/ferry/docs/abi.md; do
    [ -f "$PREFIX/$f" ] || bad "installed: $f"
done
for p in ferry ferry-serve ferry-fetch ferry-bench; do
    [ -f "$PREFIX/$FERRY_MANDIR/man1/$p.1" ] || bad "installed: man page $p(1)"
done
[ "$(readlink "$LIBDIR/libferry.so.$MAJOR")" = "libferry.so.$V" ] || bad "libferry.so.$MAJOR -> libferry.so.$V"
[ "$(readlink "$LIBDIR/libferry.so")" = "libferry.so.$MAJOR" ] || bad "libferry.so -> libferry.so.$MAJOR"
soname=$(readelf -d "$LIBDIR/libferry.so.$V" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libferry.so.$MAJOR" ] || bad "SONAME is '$soname', not libferry.so.$MAJOR"
[ "$fail" = 0 ] && ok "layout, SONAME libferry.so.$MAJOR and its links"

# The installed CLI carries no build-tree RPATH and names what it links.
if readelf -d "$PREFIX/bin/ferry" | grep -qE 'R(UN)?PATH.*'"$FERRY_BUILD"; then bad "bin/ferry has an RPATH into the build tree"; fi
out=$("$PREFIX/bin/ferry" version)
uv=$(pkg-config --modversion libuv)
ssl=$(pkg-config --modversion libssl)
if [[ "$out" == "ferry $V"$'\n'"libuv $uv"$'\n'"OpenSSL $ssl"* ]]; then ok "ferry version: ferry, libuv $uv, OpenSSL $ssl"
else bad "ferry version printed: $out"; fi

# pkg-config sees the prefix given at install time, not the configured one.
[ "$(pkg-config --variable=prefix ferry)" = "$PREFIX" ] && ok "ferry.pc: prefix=$PREFIX" || bad "ferry.pc prefix: $(pkg-config --variable=prefix ferry)"
[ "$(pkg-config --modversion ferry)" = "$V" ] || bad "ferry.pc version"
pkg-config --print-requires ferry | grep -q '^libuv' || bad "ferry.pc: Requires libuv"
for m in libssl libcrypto libpsl; do
    pkg-config --print-requires-private ferry | grep -q "^$m" || bad "ferry.pc: Requires.private $m"
done

# DESTDIR: everything under the staging root, paths inside still the real prefix.
stage=$(scratch stage)
check "DESTDIR=$stage cmake --install --prefix /opt/ferry" env DESTDIR="$stage" cmake --install "$FERRY_BUILD" --prefix /opt/ferry
grep -qx 'prefix=/opt/ferry' "$stage/opt/ferry/$FERRY_LIBDIR/pkgconfig/ferry.pc" || bad "staged ferry.pc names prefix=/opt/ferry"
[ -z "$(find "$stage" -mindepth 1 -maxdepth 1 ! -name opt)" ] || bad "DESTDIR install wrote outside $stage/opt"
# ... and the uninstall script, given that install's manifest, leaves nothing.
cp "$FERRY_BUILD/install_manifest.txt" "$stage.manifest"
n=$(grep -c "" "$stage.manifest")
check "uninstall.cmake removes the $n files of the staged install" \
    env DESTDIR="$stage" cmake -DMANIFEST="$stage.manifest" -P "$FERRY_SRC/cmake/uninstall.cmake"
left=$(find "$stage" ! -type d; find "$stage/opt/ferry/$FERRY_LIBDIR/cmake" "$stage/opt/ferry/share/doc" -mindepth 1 2>/dev/null)
[ -z "$left" ] && ok "nothing left after uninstall" || { bad "left after uninstall:"; echo "$left"; }
rm -rf "$stage"
exit $fail
