# install.cmake — what `make install` puts where (GNU layout under the prefix)
# and the two ways a program finds it: ferry.pc and the ferry CMake package.
#
#   include/ferry.h
#   lib/libferry.so.X.Y.Z (+ .so.X, .so)   lib/libferry.a
#   lib/pkgconfig/ferry.pc                 lib/cmake/ferry/ferryConfig*.cmake
#   bin/ferry                              share/man/man1/ferry*.1
#   share/doc/ferry/README.md, docs/*.md
#
# `cmake --install build --prefix P` may name another prefix than the one
# configured, so ferry.pc is written at install time, and ferryConfig.cmake
# finds the prefix relative to itself.
include(CMakePackageConfigHelpers)

install(FILES ${PROJECT_SOURCE_DIR}/include/ferry.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS ferry_shared LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${FERRY_ARCHIVE} DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS ferry_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# ---- ferry.pc: libuv is Requires (ferry.h includes uv.h and programs call
# uv_run); OpenSSL and libpsl only matter to a static link: Requires.private.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(FERRY_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  set(FERRY_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(FERRY_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(FERRY_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
set(FERRY_PC_PREFIX "@CMAKE_INSTALL_PREFIX@") # filled at install time, below
configure_file(${PROJECT_SOURCE_DIR}/cmake/ferry.pc.in ${PROJECT_BINARY_DIR}/ferry.pc.in @ONLY)
install(CODE "
  file(READ \"${PROJECT_BINARY_DIR}/ferry.pc.in\" _ferry_pc)
  string(CONFIGURE \"\${_ferry_pc}\" _ferry_pc @ONLY)
  file(WRITE \"${PROJECT_BINARY_DIR}/install/ferry.pc\" \"\${_ferry_pc}\")")
install(FILES ${PROJECT_BINARY_DIR}/install/ferry.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# ---- the CMake package: ferry::ferry (shared), ferry::ferry_static --------
set(FERRY_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/ferry)
if(IS_ABSOLUTE "${FERRY_CMAKE_DIR}")
  set(FERRY_CONFIG_TO_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH FERRY_CONFIG_TO_PREFIX /prefix/${FERRY_CMAKE_DIR} /prefix)
  set(FERRY_CONFIG_TO_PREFIX "\${CMAKE_CURRENT_LIST_DIR}/${FERRY_CONFIG_TO_PREFIX}")
endif()
configure_file(${PROJECT_SOURCE_DIR}/cmake/ferryConfig.cmake.in ${PROJECT_BINARY_DIR}/ferryConfig.cmake @ONLY)
# Same major, same ABI (docs/abi.md).
write_basic_package_version_file(${PROJECT_BINARY_DIR}/ferryConfigVersion.cmake
                                 COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/ferryConfig.cmake ${PROJECT_BINARY_DIR}/ferryConfigVersion.cmake
        DESTINATION ${FERRY_CMAKE_DIR})

# ---- man pages and docs ------------------------------------------------------
file(GLOB FERRY_MAN_PAGES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/man/*.1)
install(FILES ${FERRY_MAN_PAGES} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
file(GLOB FERRY_DOCS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/docs/*.md)
# README's links say docs/x.md: keep that shape.
install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${FERRY_DOCS} DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs)
