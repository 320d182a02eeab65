"""Warm start of aq_pp and aq_udb: a per-node service that has already imported ess.aq,
Polars and pyarrow (and built the C helper) forks children that run the commands, and reuses a
child whose command ended cleanly for the next one with the same start-up environment.

Pieces: :mod:`ess.warm.launcher` (called first thing by the ``aq_pp``/``aq_udb`` entry points:
hands argv, environment, cwd and the three standard file descriptors to the service over a
unix socket, relays signals, exits with the child's status), :mod:`ess.warm.server` (the fork
server), :mod:`ess.warm.child` (what a forked child does), :mod:`ess.warm.command` (each command's
set-up and ending), :mod:`ess.warm.reuse` and :mod:`ess.warm.pool` (reused children),
:mod:`ess.warm.service` (the supervisor that restarts a crashed server, and start/stop
helpers), :mod:`ess.warm.hooks` (the node's worker and the local default start one). With no
service, or ``ESS_WARM=0``, the commands run cold, in their own process, exactly as before.
See docs/performance.md.

This package must stay cheap to import: the launcher runs in every ``aq_pp`` process.
"""
