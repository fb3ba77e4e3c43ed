"""Every way a task attempt can fail, as one small tree of exceptions.

    RunnerError                          (base; never raised itself)
    ├── TaskError
    │   ├── InvalidPayloadError          Task.InvalidPayload
    │   └── TokenRejectedError           Task.TokenRejected
    ├── PlatformError
    │   ├── CredentialsUnavailableError  Platform.CredentialsUnavailable   (retryable)
    │   ├── AccessDeniedError            Platform.AccessDenied
    │   ├── QueryFailedError             Platform.QueryFailed              (retryable per status)
    │   └── StorageUnavailableError      Platform.StorageUnavailable       (retryable)
    ├── BundleError
    │   ├── BundleNotFoundError          Bundle.NotFound
    │   ├── IntegrityMismatchError       Bundle.IntegrityMismatch
    │   ├── BundleTooLargeError          Bundle.TooLarge
    │   ├── InvalidBundleError           Bundle.Invalid
    │   ├── MissingEntrypointError       Bundle.MissingEntrypoint
    │   └── UnsupportedArchitectureError Bundle.UnsupportedArchitecture
    ├── InvocationError                  (carries what the runtime posted, if anything)
    │   ├── InitError                    Runtime.InitError
    │   ├── ExitError                    Runtime.ExitError
    │   ├── InvalidResponseModeError     Runtime.InvalidResponseModeHeader
    │   ├── FunctionError                Function.Error
    │   ├── ResponseTooLargeError        Function.ResponseSizeTooLarge
    │   └── TimedOutError                Sandbox.Timedout
    └── SandboxError                     Sandbox.Failure                   (retryable)
        └── CleanupFailedError           Sandbox.CleanupFailed

Each class names its wire type once, as a class constant; `runner.result` is the one place that
turns an instance into the result's `error` object.
"""

from __future__ import annotations

from typing import ClassVar

from runner.models import FunctionErrorBody

__all__ = [
    "AccessDeniedError",
    "BundleError",
    "BundleNotFoundError",
    "BundleTooLargeError",
    "CleanupFailedError",
    "CredentialsUnavailableError",
    "ExitError",
    "FunctionError",
    "InitError",
    "IntegrityMismatchError",
    "InvalidBundleError",
    "InvalidPayloadError",
    "InvalidResponseModeError",
    "InvocationError",
    "MissingEntrypointError",
    "PlatformError",
    "QueryFailedError",
    "ResponseTooLargeError",
    "RunnerError",
    "SandboxError",
    "StorageUnavailableError",
    "TaskError",
    "TimedOutError",
    "TokenRejectedError",
    "UnsupportedArchitectureError",
]


class RunnerError(Exception):
    """A task attempt failed; becomes a `failed` result, never an exception out of the handler."""

    error_type: ClassVar[str] = "Sandbox.Failure"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def is_retryable(self) -> bool:
        """Whether the control plane may retry the task (the class default unless overridden)."""
        return self.retryable


class TaskError(RunnerError):
    """The task as sent cannot run."""


class InvalidPayloadError(TaskError):
    """The payload fails validation."""

    error_type = "Task.InvalidPayload"


class TokenRejectedError(TaskError):
    """The capability token is expired, malformed, or not for this task, attempt or bundle."""

    error_type = "Task.TokenRejected"


class PlatformError(RunnerError):
    """A platform service refused or failed."""


class CredentialsUnavailableError(PlatformError):
    """The credential minter was unreachable or failing after every retry."""

    error_type = "Platform.CredentialsUnavailable"
    retryable = True


class AccessDeniedError(PlatformError):
    """The minter or S3 refused the requested scope."""

    error_type = "Platform.AccessDenied"


class QueryFailedError(PlatformError):
    """An input query failed; retryable when the service itself failed (5xx, timeouts)."""

    error_type = "Platform.QueryFailed"

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self._retryable = retryable

    @property
    def is_retryable(self) -> bool:
        return self._retryable


class StorageUnavailableError(PlatformError):
    """S3 was unreachable, throttling or failing after every retry."""

    error_type = "Platform.StorageUnavailable"
    retryable = True


class BundleError(RunnerError):
    """The bundle cannot be used."""


class BundleNotFoundError(BundleError):
    """No object at the bundle's URI."""

    error_type = "Bundle.NotFound"


class IntegrityMismatchError(BundleError):
    """The bundle's SHA-256 differs from the pinned one; nothing was extracted or run."""

    error_type = "Bundle.IntegrityMismatch"


class BundleTooLargeError(BundleError):
    """The compressed or uncompressed bundle is over its limit."""

    error_type = "Bundle.TooLarge"


class InvalidBundleError(BundleError):
    """Not a zip, an unsafe entry (named in the message), or a zip bomb."""

    error_type = "Bundle.Invalid"


class MissingEntrypointError(BundleError):
    """No `bootstrap` at the root, or no file for the Node handler."""

    error_type = "Bundle.MissingEntrypoint"


class UnsupportedArchitectureError(BundleError):
    """A native `bootstrap` that is not linux/amd64 (the message says what it is)."""

    error_type = "Bundle.UnsupportedArchitecture"


class InvocationError(RunnerError):
    """The bundle ran but did not produce a response; keeps what the runtime posted."""

    def __init__(self, message: str, *, function_error: FunctionErrorBody | None = None) -> None:
        super().__init__(message)
        self.function_error = function_error


class InitError(InvocationError):
    """The runtime posted `init/error`."""

    error_type = "Runtime.InitError"


class ExitError(InvocationError):
    """The runtime exited (code or signal) before answering."""

    error_type = "Runtime.ExitError"


class InvalidResponseModeError(InvocationError):
    """The runtime sent a `Lambda-Runtime-Function-Response-Mode` other than `streaming`."""

    error_type = "Runtime.InvalidResponseModeHeader"


class FunctionError(InvocationError):
    """The runtime posted `invocation/error` (its own errorType is in `function_error`)."""

    error_type = "Function.Error"


class ResponseTooLargeError(InvocationError):
    """The response is over the limit."""

    error_type = "Function.ResponseSizeTooLarge"


class TimedOutError(InvocationError):
    """No answer before the deadline."""

    error_type = "Sandbox.Timedout"


class SandboxError(RunnerError):
    """The runner could not provide a safe environment for the attempt (or failed itself)."""

    error_type = "Sandbox.Failure"
    retryable = True


class CleanupFailedError(SandboxError):
    """What the bundle left could not all be removed; the environment then refuses every later
    bundle. Not retryable: the bundle that left it would leave it again."""

    error_type = "Sandbox.CleanupFailed"
    retryable = False
