"""The one error hierarchy of atlas2d.

Messages are full sentences that name the file, record and field at fault and say
what to do. The CLI prints an ``Atlas2dError`` as one red line and exits with 1.
"""

from __future__ import annotations


class Atlas2dError(Exception):
    """Base class of every error atlas2d raises on purpose."""


class NotFound(Atlas2dError):
    """A named record (material, training set, model) does not exist."""


class AlreadyExists(Atlas2dError):
    """A record with the same natural key is already stored."""


class InvalidInput(Atlas2dError):
    """A file or record is malformed; nothing was written for it."""


class SchemaOutOfDate(Atlas2dError):
    """The database schema is behind the code: run ``atlas2d db upgrade``."""


class MissingExtra(Atlas2dError):
    """An optional dependency is not installed; the message names the extra."""


class DatabaseUnavailable(Atlas2dError):
    """The database cannot be reached."""


class ConnectionLost(DatabaseUnavailable):
    """The database connection broke during a command; its open transaction was rolled back."""


class PermissionDenied(Atlas2dError):
    """The database role lacks a privilege the command needs."""


class WorkerDied(Atlas2dError):
    """A worker process of a command ended without its result (killed, out of memory)."""


class CannotListen(Atlas2dError):
    """``atlas2d serve`` cannot listen on the host and port given (in use, not this
    machine's address, or a privileged port)."""


class NoReaderLogin(Atlas2dError):
    """User SQL has no login that can only read: none is configured, or the one
    configured could write or administer the database."""


class ArtifactChanged(Atlas2dError):
    """A model file on disk no longer matches the sha256 in the registry."""


class TrainingFailed(Atlas2dError):
    """A training run failed; its model version is recorded as ``failed``."""


class CampaignBusy(Atlas2dError):
    """Another ``al run`` of the same campaign holds it."""
