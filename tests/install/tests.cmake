# tests.cmake — ferry as a dependency (issue 12), included from CMakeLists.txt
# when FERRY_TESTS is on. Scripts in tests/install and tests/abi; each takes
# seconds.
#
#   install_tree       cmake --install into build/install-test (a fixture for the rest),
#                      the layout, the SONAME, DESTDIR, the uninstall manifest
#   install_pkgconfig  an outside program built with pkg-config, shared and static
#   install_cmake      an outside CMake project: find_package(ferry) + ferry::ferry
#   install_symbols    only ferry_* leaves libferry.so and the installed libferry.a
#   install_clash      a program defining parse_request, url_parse, buf_reserve links
#                      with either library, and its server answers 200
#   install_man        every man page renders without a warning and names every flag
#   abi_grow           a program built against tests/abi/ferry_v0_1_0.h runs on a
#                      library whose options structs have grown

# Outside programs are built like ours: sanitizers too, or ASan's runtime is missing.
set(FERRY_OUTSIDE_CFLAGS "")
if(FERRY_SANITIZE)
  set(FERRY_OUTSIDE_CFLAGS "-fsanitize=address,undefined -fno-sanitize-recover=all")
endif()
set(FERRY_INSTALL_TEST_DIR ${PROJECT_BINARY_DIR}/install-test)
set(FERRY_INSTALL_TEST_ENV
    "FERRY_SRC=${PROJECT_SOURCE_DIR}" "FERRY_BUILD=${PROJECT_BINARY_DIR}"
    "FERRY_TEST_DIR=${FERRY_INSTALL_TEST_DIR}" "FERRY_LIBDIR=${CMAKE_INSTALL_LIBDIR}"
    "FERRY_MANDIR=${CMAKE_INSTALL_MANDIR}" "FERRY_CC=${CMAKE_C_COMPILER}"
    "FERRY_OUTSIDE_CFLAGS=${FERRY_OUTSIDE_CFLAGS}" "FERRY_VERSION=${PROJECT_VERSION}"
    "CMOCKA_MESSAGE_OUTPUT=STDOUT")

add_test(NAME install_tree COMMAND ${PROJECT_SOURCE_DIR}/tests/install/install_tree.sh)
set_tests_properties(install_tree PROPERTIES FIXTURES_SETUP ferry_installed)
foreach(t pkgconfig cmake symbols clash man)
  add_test(NAME install_${t} COMMAND ${PROJECT_SOURCE_DIR}/tests/install/${t}.sh)
  set_tests_properties(install_${t} PROPERTIES FIXTURES_REQUIRED ferry_installed)
endforeach()
foreach(t tree pkgconfig cmake symbols clash man)
  set_tests_properties(install_${t} PROPERTIES TIMEOUT 60 ENVIRONMENT "${FERRY_INSTALL_TEST_ENV}")
endforeach()

# ---- the ABI test --------------------------------------------------------------
# The library again, with -DFERRY_ABI_TEST_GROW (every options struct longer),
# at -O0 since only its layout matters: build/abi-grow/libferry.so.0.
add_library(ferry_abi_grow SHARED ${FERRY_SOURCES})
set_target_properties(ferry_abi_grow PROPERTIES OUTPUT_NAME ferry C_VISIBILITY_PRESET hidden
                      LIBRARY_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/abi-grow
                      VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR})
target_include_directories(ferry_abi_grow PRIVATE ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src)
target_compile_options(ferry_abi_grow PRIVATE ${FERRY_LIB_WARNINGS} -O0)
target_compile_definitions(ferry_abi_grow PRIVATE FERRY_HAVE_LIBPSL FERRY_ABI_TEST_GROW)
target_link_libraries(ferry_abi_grow PRIVATE ${FERRY_DEPS})

# The old program sees only the frozen header (not include/), and links
# libferry.so by file; which libferry.so.0 it meets is LD_LIBRARY_PATH's choice.
add_executable(abi_old ${PROJECT_SOURCE_DIR}/tests/abi/abi_old.c)
set_target_properties(abi_old PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests
                      SKIP_BUILD_RPATH ON)
target_include_directories(abi_old PRIVATE ${PROJECT_SOURCE_DIR}/tests/abi)
target_compile_options(abi_old PRIVATE ${FERRY_BASE_WARNINGS})
target_link_libraries(abi_old PRIVATE $<TARGET_FILE:ferry_shared> PkgConfig::LIBUV)
add_dependencies(abi_old ferry_shared ferry_abi_grow)
add_test(NAME abi_grow COMMAND ${PROJECT_SOURCE_DIR}/tests/abi/abi.sh $<TARGET_FILE:abi_old>
                               ${PROJECT_BINARY_DIR} ${PROJECT_BINARY_DIR}/abi-grow)
set_tests_properties(abi_grow PROPERTIES TIMEOUT 60)
