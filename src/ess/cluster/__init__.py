"""Cluster providers (local now; EC2 and SSH later) behind one interface, see provider.py."""
