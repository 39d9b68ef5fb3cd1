"""botyard's one error tree.

Every error a user can cause derives from ``BotyardError`` and from the built-in
exception that fits it, so callers may catch either::

    BotyardError
     +-- DataValidationError (ValueError)     bad training data: file, row, field
     +-- ConfigError (ValueError)             a parameter out of its allowed range
     +-- ModelStoreError (LookupError)        a bot or model version that is not there
     |    +-- ModelLoadError                  a model version whose files are unusable
     +-- RequestError (ValueError)            a client's bad prediction request (HTTP 4xx)
     |    +-- UnknownBotError                 a bot the predictor does not serve (404)
     |    |    +-- NoLiveVersionError         a bot with model versions but none promoted (404)
     |    +-- ForbiddenError                  an admin request without a valid token (403)
     |    +-- RequestTooLargeError            a batch or utterance over the predictor's limit (413)
     +-- DeployError (RuntimeError)           a deploy / rollout that did not complete
     +-- SubmitError (RuntimeError)           the KFP endpoint refused, failed or was unreachable
     +-- StorageError (OSError)               object storage refused, unreachable or without credentials

Messages say what is wrong, where (file, row, intent) and how to fix it; boundaries
translate low-level errors with ``raise ... from exc``.
"""

from __future__ import annotations


class BotyardError(Exception):
    """Root of every error botyard raises on purpose."""

    exit_code = 1


class DataValidationError(BotyardError, ValueError):
    """Training data that cannot be used; the message names the file and the rows at fault."""

    exit_code = 2

    def __init__(self, message: str, *, source: str | None = None, problems: list[str] | None = None):
        self.source = source
        self.problems = list(problems or [])
        self.stage: str | None = None  # the step it stops: set by ``base.training_data``
        super().__init__(message)


class ConfigError(BotyardError, ValueError):
    """A configuration value outside its allowed range; the message names the field."""

    exit_code = 2


class ModelStoreError(BotyardError, LookupError):
    """A bot or model version missing from the model store."""

    exit_code = 3


class ModelLoadError(ModelStoreError):
    """A model version whose files are missing or corrupt."""


class RequestError(BotyardError, ValueError):
    """A client's malformed prediction request; becomes an HTTP 4xx."""

    status_code = 400


class UnknownBotError(RequestError):
    """A prediction request for a bot the predictor does not serve."""

    status_code = 404


class NoLiveVersionError(UnknownBotError):
    """A bot whose versions were never promoted: nothing of it is served (unblessed is never served)."""


class ForbiddenError(RequestError):
    """A request for an admin action this predictor refuses (disabled, or no valid token)."""

    status_code = 403


class RequestTooLargeError(RequestError):
    """A batch or an utterance over the predictor's configured limit; the fix is to split it."""

    status_code = 413


class DeployError(BotyardError, RuntimeError):
    """A deployment or rollout that did not complete."""

    exit_code = 4


class SubmitError(BotyardError, RuntimeError):
    """The KFP endpoint refused or failed a request (or could not be reached)."""

    exit_code = 5

    def __init__(self, message: str, *, status: int | None = None):
        self.status = status
        super().__init__(message)


class StorageError(BotyardError, OSError):
    """Object storage that refused a request, could not be reached, or had no credentials; names the URI."""

    exit_code = 6

    def __init__(self, message: str, *, uri: str | None = None):
        self.uri = uri
        super().__init__(message)
