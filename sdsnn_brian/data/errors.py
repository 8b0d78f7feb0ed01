"""What the data readers raise and warn about damaged or cut files.

Every reader in :mod:`sdsnn_brian.data` ends one of three ways (see each reader's module
docstring for what its format lets it check):

* the data, read exactly;
* a prefix of whole records and a :class:`TruncatedDataWarning` saying how many were read
  (only where the file simply stops early);
* :class:`CorruptDataError`, naming the file and what is wrong with it.
"""

from __future__ import annotations

__all__ = ["CorruptDataError", "TruncatedDataWarning"]


class CorruptDataError(ValueError):
    """A data file is damaged (fails a checksum, decodes to impossible values, has a header
    that does not fit its content, ...).  The message names the file and what is wrong."""


class TruncatedDataWarning(UserWarning):
    """A data file held fewer whole records than its header declares."""
