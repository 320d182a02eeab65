"""stream / exec / file transfer: plans built on the master, tasks run on the workers."""
