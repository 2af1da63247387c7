# The opt-out switch read from the environment (unit-denormals.cpp, hidden test case [.env-off]).
add_test(NAME unit-denormals-env-off COMMAND ${XFER_UNIT_PROGRAM_unit-denormals} "[.env-off]" --warn NoTests)
set_tests_properties(unit-denormals-env-off PROPERTIES ENVIRONMENT "XFER_FLUSH_DENORMALS=0"
  LABELS "${XFER_UNIT_LABELS_unit-denormals}")
