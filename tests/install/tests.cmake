# tests.cmake — ferry as a dependency (issue 12), included from CMakeLists.txt
# when FERRY_TESTS is on; each test takes seconds.
#
#   abi_grow           a program built against tests/abi/ferry_v0_1_0.h runs on a
#                      library whose options structs have grown

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
