// Catch2 main for the MPI tests: every rank runs every test case (the collectives inside them are
// matched), and the job fails when any rank's checks failed. Checks in these tests use CHECK, not
// REQUIRE, where only one rank could fail (an early throw would leave the others waiting).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <xfer/dist.hpp>

int main(int argc, char** argv) {
  xfer::dist::Environment env(argc, argv);
  int rc = Catch::Session().run(argc, argv);
  MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return rc;
}
