# Distributed tests (issue 15), only with xfer::mpi: the MPI test program under mpirun with 2 and 3
# ranks (odd world sizes give uneven splits), and finetune_cifar10's fault/resume test.
# (vader single-copy off: containers often forbid the cross-process reads it uses; CI runs in one.)
if(TARGET xfer::mpi)
  set(XFER_MPIRUN ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe ${MPIEXEC_NUMPROC_FLAG})
  add_executable(dist-data-parallel dist-data-parallel.cpp dist_main.cpp)
  target_link_libraries(dist-data-parallel PRIVATE xfer::mpi Catch2::Catch2)
  xfer_program_options(dist-data-parallel)
  foreach(np 2 3)
    add_test(NAME dist-data-parallel-np${np}
      COMMAND ${XFER_MPIRUN} ${np} ${MPIEXEC_PREFLAGS} $<TARGET_FILE:dist-data-parallel> ${MPIEXEC_POSTFLAGS})
    set_tests_properties(dist-data-parallel-np${np} PROPERTIES TIMEOUT 300
      ENVIRONMENT "OMP_NUM_THREADS=1;OMPI_MCA_btl_vader_single_copy_mechanism=none")
  endforeach()
  if(TARGET finetune_cifar10)
    add_executable(e2e-dist-fault e2e-dist-fault.cpp)
    target_link_libraries(e2e-dist-fault PRIVATE xfer_test_main Catch2::Catch2)
    string(JOIN " " XFER_MPIRUN_LINE ${XFER_MPIRUN})
    target_compile_definitions(e2e-dist-fault PRIVATE XFER_TEST_TMP="${XFER_TEST_TMP}"
      FINETUNE_EXE="$<TARGET_FILE:finetune_cifar10>" MPIRUN="${XFER_MPIRUN_LINE}")
    xfer_program_options(e2e-dist-fault)
    add_dependencies(e2e-dist-fault finetune_cifar10)
    add_test(NAME e2e-dist-fault COMMAND e2e-dist-fault)
    set_tests_properties(e2e-dist-fault PROPERTIES TIMEOUT 600
      ENVIRONMENT "OMP_NUM_THREADS=1;OMPI_MCA_btl_vader_single_copy_mechanism=none")
  endif()
endif()
