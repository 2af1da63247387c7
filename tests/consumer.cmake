# Installs xfer into a scratch prefix, then configures, builds and runs a tiny consumer project that
# uses find_package(xfer) against the installed tree (not the source tree).
add_test(NAME consumer_find_package
  COMMAND ${CMAKE_COMMAND}
    -DXFER_SOURCE_DIR=${CMAKE_SOURCE_DIR}
    -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/consumer
    -DGENERATOR=${CMAKE_GENERATOR}
    -P ${CMAKE_CURRENT_SOURCE_DIR}/cmake_import/run.cmake)
set_tests_properties(consumer_find_package PROPERTIES TIMEOUT 600)
