"""The aq language: column specs, expressions compiled to Polars, readers, writers and aq_pp."""
