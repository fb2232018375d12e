"""`pybuild check`: parse and plan a Dockerfile without executing it."""
