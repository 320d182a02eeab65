"""The one exception tree of ess, and the exit code of each branch.

    EssError                      exit 1   anything ess reports on purpose
    ├── UsageError                exit 2   bad command-line usage (same code as argparse)
    ├── ConfigError               exit 3   workspace / state files / settings
    │   └── CredentialsError      exit 3   missing, unreadable or rejected credentials
    ├── DatastoreError            exit 4   datastore, category, file access
    │   ├── CategoryError         exit 4   unknown category, bad pattern, bad date rule
    │   └── DecompressError       exit 4   corrupt or unsupported compressed data
    ├── ClusterError              exit 5   cluster providers and the Dask engine
    ├── CommandFailed             exit 6   a user command run by stream/exec exited non-zero
    ├── AqError                   exit 7   aq_pp / aq_udb
    │   ├── AqSyntaxError         exit 7   bad rule or expression syntax
    │   └── AqDataError           exit 8   bad input data (a row that cannot be parsed)
    ├── UdbError                  exit 9   the in-memory database
    └── NotSupportedError         exit 10  a documented feature that ess does not implement yet

The library raises these; only ``ess.cli.main.run_cli`` turns them into a message on stderr
and an exit code, so every command behaves the same way.
"""

from __future__ import annotations


class EssError(Exception):
    """Base of every error ess reports on purpose."""

    exit_code = 1


class UsageError(EssError):
    exit_code = 2


class ConfigError(EssError):
    exit_code = 3


class CredentialsError(ConfigError):
    pass


class DatastoreError(EssError):
    exit_code = 4


class CategoryError(DatastoreError):
    pass


class DecompressError(DatastoreError):
    pass


class ClusterError(EssError):
    exit_code = 5


class CommandFailed(EssError):
    exit_code = 6


class AqError(EssError):
    exit_code = 7


class AqSyntaxError(AqError):
    pass


class AqDataError(AqError):
    exit_code = 8


class UdbError(EssError):
    exit_code = 9


class NotSupportedError(EssError):
    exit_code = 10

    def __init__(self, feature: str) -> None:
        super().__init__(f"{feature}: not supported yet (see the compatibility table in README.md)")
