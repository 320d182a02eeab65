"""The dashboard: ess ui, a Starlette application on 127.0.0.1 (issue 19)."""
