"""Loading command output into SQL databases: PostgreSQL (COPY from the workers) and Redshift
(S3 staging + COPY with a manifest), exactly once per file (ess redshift, issue 17)."""
