"""`pybuild store ...`: maintenance of the local store."""
