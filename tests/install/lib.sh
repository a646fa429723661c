# lib.sh — shared by tests/install/*.sh (sourced). CTest passes the build's
# facts in the environment (tests/install/tests.cmake): FERRY_SRC, FERRY_BUILD,
# FERRY_TEST_DIR, FERRY_LIBDIR, FERRY_MANDIR, FERRY_CC, FERRY_OUTSIDE_CFLAGS,
# FERRY_VERSION. install_tree.sh installs into $PREFIX; the others use it.
set -u
: "${FERRY_SRC:?run through ctest}" "${FERRY_BUILD:?}" "${FERRY_TEST_DIR:?}" "${FERRY_LIBDIR:?}"
PREFIX=$FERRY_TEST_DIR/prefix
LIBDIR=$PREFIX/$FERRY_LIBDIR
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }
# check DESCRIPTION CMD...: run it, quietly unless it fails
check() {
    local what=$1 out; shift
    if out=$("$@" 2>&1); then ok "$what"; else bad "$what"; echo "$out" | tail -n 30; fi
}
# scratch NAME: an empty directory of this test's own
scratch() {
    local d=$FERRY_TEST_DIR/$1
    rm -rf "$d" && mkdir -p "$d" && echo "$d"
}
need_prefix() {
    [ -f "$LIBDIR/pkgconfig/ferry.pc" ] || { echo "FAIL nothing installed in $PREFIX (install_tree)"; exit 1; }
}
