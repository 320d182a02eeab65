"""The Dask engine: TLS material, scheduler/worker daemons, the client connection and task pools.

Nothing here imports Dask at module import time; the heavy import happens inside the functions
that need it, so ``ess --help`` stays fast.
"""
