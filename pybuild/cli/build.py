"""`pybuild build` (the default command)."""
