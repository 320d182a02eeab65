"""Command lines: parse arguments, call the library, print. Nothing else lives here."""
