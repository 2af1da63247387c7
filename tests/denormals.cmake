# The opt-out switch read from the environment (unit-denormals.cpp, hidden test case [.env-off]).
add_test(NAME unit-denormals-env-off COMMAND unit-denormals "[.env-off]")
set_tests_properties(unit-denormals-env-off PROPERTIES ENVIRONMENT "XFER_FLUSH_DENORMALS=0")
