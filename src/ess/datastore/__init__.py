"""Datastores (local disk, S3), categories of their files, dates, probing and decompression."""
