"""The UDB: a hash-partitioned in-memory database held in the Dask workers (issue 5)."""
