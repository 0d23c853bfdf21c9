"""actscan's test suite (a package, so that tests and benchmarks import ``tests.fixtures``)."""
