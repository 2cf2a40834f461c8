# Imported targets for the Debian packages Cairn builds against.
#
# Debian's libcaf-dev ships neither a CMake package nor a pkg-config file, so
# CAF's targets are written here by hand: find_path(caf/all.hpp) and one
# find_library per CAF library (docs/design.md names the CAF version).

find_package(Threads REQUIRED)

find_path(CAF_INCLUDE_DIR caf/all.hpp REQUIRED)
foreach(comp core io openssl)
  find_library(CAF_${comp}_LIBRARY NAMES caf_${comp} REQUIRED)
  add_library(CAF::${comp} UNKNOWN IMPORTED)
  set_target_properties(CAF::${comp} PROPERTIES
    IMPORTED_LOCATION "${CAF_${comp}_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${CAF_INCLUDE_DIR}")
endforeach()
set_property(TARGET CAF::core PROPERTY INTERFACE_LINK_LIBRARIES Threads::Threads)
set_property(TARGET CAF::io PROPERTY INTERFACE_LINK_LIBRARIES CAF::core)
find_package(OpenSSL REQUIRED)
set_property(TARGET CAF::openssl PROPERTY INTERFACE_LINK_LIBRARIES CAF::io OpenSSL::SSL OpenSSL::Crypto)

find_package(Boost 1.74 REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(simdjson REQUIRED)
find_package(spdlog REQUIRED)
find_package(leveldb REQUIRED)
# Prometheus remote_write (promwire/): protoc + the lite runtime, and snappy's
# block format (libprotobuf-dev, protobuf-compiler, libsnappy-dev).
find_package(Protobuf REQUIRED)
find_package(Snappy REQUIRED)
# gzip bodies of POST /write (zlib1g-dev).
find_package(ZLIB REQUIRED)

find_path(XXHASH_INCLUDE_DIR xxhash.h REQUIRED)
find_library(XXHASH_LIBRARY NAMES xxhash REQUIRED)
add_library(xxhash::xxhash UNKNOWN IMPORTED)
set_target_properties(xxhash::xxhash PROPERTIES
  IMPORTED_LOCATION "${XXHASH_LIBRARY}"
  INTERFACE_INCLUDE_DIRECTORIES "${XXHASH_INCLUDE_DIR}")

find_library(READLINE_LIBRARY NAMES readline)
find_path(DOCTEST_INCLUDE_DIR doctest/doctest.h)
find_package(benchmark QUIET)

# JWT verification of client tokens (runtime/auth/jwt_verifier; libjwt-dev
# ships a pkg-config file).
find_package(PkgConfig REQUIRED)
pkg_check_modules(JWT REQUIRED IMPORTED_TARGET libjwt)
