# uninstall.cmake — `make uninstall`: remove every file a `make install` wrote,
# as listed in MANIFEST (CMake's install manifests: one path a line, without
# DESTDIR), then the directories that are ferry's own, once empty. DESTDIR in
# the environment is prepended to each path, as cmake --install does.
#   [DESTDIR=...] cmake -DMANIFEST=build/installed_files.txt -P cmake/uninstall.cmake
if(NOT MANIFEST OR NOT EXISTS "${MANIFEST}")
  message(STATUS "ferry: nothing to uninstall (no ${MANIFEST})")
  return()
endif()
file(STRINGS "${MANIFEST}" _files)
list(REMOVE_DUPLICATES _files)
set(_dirs)
foreach(f IN LISTS _files)
  set(f "$ENV{DESTDIR}${f}")
  if(EXISTS "${f}" OR IS_SYMLINK "${f}")
    message(STATUS "Removing ${f}")
    file(REMOVE "${f}")
  endif()
  get_filename_component(d "${f}" DIRECTORY)
  list(APPEND _dirs "${d}")
endforeach()
# lib/cmake/ferry, share/doc/ferry/docs, share/doc/ferry; never a shared directory.
list(REMOVE_DUPLICATES _dirs)
list(SORT _dirs ORDER DESCENDING) # children before parents
foreach(d IN LISTS _dirs)
  if(d MATCHES "/ferry(/docs)?$" AND IS_DIRECTORY "${d}")
    file(GLOB _left "${d}/*")
    if(NOT _left)
      file(REMOVE_RECURSE "${d}")
    endif()
  endif()
endforeach()
file(REMOVE "${MANIFEST}")
