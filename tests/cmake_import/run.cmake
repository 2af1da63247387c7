# Driven by ctest (see tests/consumer.cmake): install, then build and run the consumer.
file(REMOVE_RECURSE "${WORK_DIR}")
function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  message(STATUS "${what}: ok")
  set(LAST_OUTPUT "${out}" PARENT_SCOPE)
endfunction()
run_step("configure xfer" ${CMAKE_COMMAND} -S ${XFER_SOURCE_DIR} -B ${WORK_DIR}/xfer-build -G ${GENERATOR}
  -DXFER_BUILD_TESTS=OFF -DXFER_BUILD_EXAMPLES=OFF -DXFER_BUILD_BENCHMARKS=OFF -DXFER_INSTALL=ON
  -DCMAKE_INSTALL_PREFIX=${WORK_DIR}/prefix)
run_step("install xfer" ${CMAKE_COMMAND} --install ${WORK_DIR}/xfer-build)
run_step("configure consumer" ${CMAKE_COMMAND} -S ${XFER_SOURCE_DIR}/tests/cmake_import -B ${WORK_DIR}/app-build
  -G ${GENERATOR} -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_BUILD_TYPE=Release)
run_step("build consumer" ${CMAKE_COMMAND} --build ${WORK_DIR}/app-build)
run_step("run consumer" ${WORK_DIR}/app-build/consumer)
if(NOT LAST_OUTPUT MATCHES "trainable=5130")
  message(FATAL_ERROR "consumer printed unexpected output:\n${LAST_OUTPUT}")
endif()

# The same application vendoring xfer with add_subdirectory.
run_step("configure add_subdirectory consumer" ${CMAKE_COMMAND} -S ${XFER_SOURCE_DIR}/tests/cmake_add_subdirectory
  -B ${WORK_DIR}/subdir-build -G ${GENERATOR} -DXFER_SOURCE_DIR=${XFER_SOURCE_DIR} -DCMAKE_BUILD_TYPE=Release)
run_step("build add_subdirectory consumer" ${CMAKE_COMMAND} --build ${WORK_DIR}/subdir-build)
run_step("run add_subdirectory consumer" ${WORK_DIR}/subdir-build/consumer)
if(NOT LAST_OUTPUT MATCHES "trainable=5130")
  message(FATAL_ERROR "add_subdirectory consumer printed unexpected output:\n${LAST_OUTPUT}")
endif()
