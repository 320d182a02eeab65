"""Loading processed data into SQL databases: any PostgreSQL, or Amazon Redshift.

``ess redshift`` is a thin command line over this package:

* :mod:`ess.load.target` — the linked database (:class:`Registration`, stored in the workspace
  without its password; the password sits alone in a 0600 file beside it) and connecting to it;
* :mod:`ess.load.sqlcsv` — ``ess redshift sql``: one statement, the result as aq-style CSV;
* :mod:`ess.load.schema` — ``gentable``: a category's column spec as ``CREATE TABLE``;
* :mod:`ess.load.options` — Redshift COPY options, parsed (never pasted into SQL);
* :mod:`ess.load.ledger` — the ``ess_load_ledger`` / ``ess_load_errors`` tables;
* :mod:`ess.load.rows` — MAXERROR / TRUNCATECOLUMNS emulation for PostgreSQL, in Polars;
* :mod:`ess.load.copyin` — the loader each worker runs per file (``python -m ess.load.copyin``);
* :mod:`ess.load.stream` — ``ess redshift stream`` on the master: ess stream's file selection,
  each file's command piped into the loader;
* :mod:`ess.load.redshift` — Redshift: S3 staging parts, one manifest COPY, ledger, cleanup.
"""
