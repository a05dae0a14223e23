# Locate OpenBLAS, preferring the OpenMP-threaded build: it shares one thread
# pool with the engine's own OpenMP loops instead of spinning a second one.
find_path(OPENBLAS_INCLUDE_DIR cblas.h
  PATHS /usr/include/x86_64-linux-gnu/openblas-openmp
        /usr/include/aarch64-linux-gnu/openblas-openmp
        /usr/include/openblas /usr/include
  NO_DEFAULT_PATH)
find_library(OPENBLAS_LIBRARY NAMES openblas
  PATHS /usr/lib/x86_64-linux-gnu/openblas-openmp
        /usr/lib/aarch64-linux-gnu/openblas-openmp
  NO_DEFAULT_PATH)
if(NOT OPENBLAS_LIBRARY)
  find_library(OPENBLAS_LIBRARY NAMES openblas)
endif()
if(NOT OPENBLAS_INCLUDE_DIR OR NOT OPENBLAS_LIBRARY)
  message(FATAL_ERROR "OpenBLAS not found: run packaging/install-deps.sh (libopenblas-openmp-dev)")
endif()
add_library(Crucible::OpenBLAS UNKNOWN IMPORTED)
set_target_properties(Crucible::OpenBLAS PROPERTIES
  IMPORTED_LOCATION ${OPENBLAS_LIBRARY}
  INTERFACE_INCLUDE_DIRECTORIES ${OPENBLAS_INCLUDE_DIR})
message(STATUS "Crucible: OpenBLAS ${OPENBLAS_LIBRARY}")
# Installed binaries must load this OpenBLAS, not whichever one the system's
# alternatives point at (often the pthread build).
get_filename_component(OPENBLAS_LIBRARY_DIR ${OPENBLAS_LIBRARY} DIRECTORY)
list(APPEND CMAKE_INSTALL_RPATH ${OPENBLAS_LIBRARY_DIR})
