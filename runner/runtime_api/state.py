"""The protocol of one invocation, as a state machine: what the runtime may do, and when.

The whole protocol is the table `_TRANSITIONS`. A phase's row lists the events it allows and
the phase each one leads to; an event missing from the row is refused (`NotAllowed`), so a new
phase allows nothing until someone says otherwise, as the Runtime Interface Emulator's states
refuse every transition they do not explicitly allow. The state decides and returns a refusal
as a value; the server (`runner.runtime_api.server`) chooses the HTTP reply for it. The rules
themselves are docs/runtime-api.md#replies, the one invocation with its held `next`
docs/runtime-api.md#held.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from runner.models import FunctionErrorBody

__all__ = [
    "Answer",
    "Event",
    "Hold",
    "InvalidRequestId",
    "InvalidResponseMode",
    "Invocation",
    "InvocationState",
    "LateAnswer",
    "NotAllowed",
    "Oversized",
    "Phase",
    "PostedError",
    "Refusal",
    "Response",
    "TooLate",
]


@dataclass(frozen=True)
class Invocation:
    """The one invocation handed to the child, with the values of the `next` headers."""

    request_id: str
    event: bytes
    deadline_ms: int
    function_arn: str
    trace_id: str | None = None
    client_context: str | None = None
    cognito_identity: str | None = None


@dataclass(frozen=True)
class Response:
    """A complete response body (buffered, or a stream assembled)."""

    body: bytes
    content_type: str


@dataclass(frozen=True)
class PostedError:
    """What the runtime posted to `init/error` or `invocation/error` (or in stream trailers)."""

    phase: str  # "init" or "invocation"
    error: FunctionErrorBody


@dataclass(frozen=True)
class Oversized:
    """A response body over the limit: its declared size, or a stream's size when it crossed."""

    size: int
    limit: int


@dataclass(frozen=True)
class InvalidResponseMode:
    """A `Lambda-Runtime-Function-Response-Mode` other than `streaming`."""

    mode: str


@dataclass(frozen=True)
class LateAnswer:
    """An answer that arrived after the deadline; it counts as a timeout."""


Answer = Response | PostedError | Oversized | InvalidResponseMode | LateAnswer


class Phase(enum.Enum):
    """Where the one invocation stands."""

    INIT = "Init"  # started, has not asked for the event yet
    INVOKED = "Invoked"  # has the event, owes an answer
    ANSWERED = "Answered"  # answered; a further `next` is held until the child is stopped
    INIT_FAILED = "InitFailed"  # posted init/error; should exit
    CLOSED = "Closed"  # the runner has decided the outcome (exit, timeout); nothing more counts


class Event(enum.Enum):
    """What the runtime asks for; the value is the state Lambda's refusal message names."""

    NEXT = "Ready"
    ANSWER = "ResponseSent"
    LATE_ANSWER = "LateResponseSent"
    INIT_ERROR = "InitError"
    REGISTER_EXTENSION = "ExtensionRegistered"


#: Every transition the protocol allows (see the module docstring). A `next` after the answer
#: leaves the phase as it is: the call is held, for one invocation per task.
_TRANSITIONS: dict[Phase, dict[Event, Phase]] = {
    Phase.INIT: {Event.NEXT: Phase.INVOKED, Event.INIT_ERROR: Phase.INIT_FAILED,
                 Event.REGISTER_EXTENSION: Phase.INIT},
    Phase.INVOKED: {Event.ANSWER: Phase.ANSWERED, Event.LATE_ANSWER: Phase.CLOSED},
    Phase.ANSWERED: {Event.NEXT: Phase.ANSWERED},
    Phase.INIT_FAILED: {},
    Phase.CLOSED: {Event.NEXT: Phase.CLOSED},
}


@dataclass(frozen=True)
class NotAllowed:
    """The event is not allowed in the current phase."""

    current: Phase
    event: Event

    @property
    def message(self) -> str:
        """Lambda's wording of the refusal."""
        target = Event.ANSWER.value if self.event is Event.LATE_ANSWER else self.event.value
        return (f"State transition from {self.current.value} to {target} failed for runtime. "
                "Error: State transition is not allowed")


@dataclass(frozen=True)
class InvalidRequestId:
    """An answer for a request id the runtime was not given."""


@dataclass(frozen=True)
class TooLate:
    """An answer after the deadline: recorded as `LateAnswer`, refused to the runtime."""


@dataclass(frozen=True)
class Hold:
    """A `next` after the one invocation: the call waits until the child is stopped."""


Refusal = NotAllowed | InvalidRequestId | TooLate


class InvocationState:
    """The protocol for one invocation. Every method is called from a server thread."""

    def __init__(self, invocation: Invocation, *, deadline: float,
                 on_change: Callable[[], None]) -> None:
        self.invocation = invocation
        self._deadline = deadline  # time.monotonic() value after which answers are late
        self._on_change = on_change  # called by `publish` and on a held `next`, outside the lock
        self._phase = Phase.INIT
        self._answer: Answer | None = None
        self._published = False
        self._next_at: float | None = None
        self._answered_at: float | None = None
        self._held = False
        self._lock = threading.Lock()
        self._closed = threading.Event()

    @property
    def phase(self) -> Phase:
        """Where the invocation stands now."""
        return self._phase

    @property
    def answer(self) -> Answer | None:
        """What the runtime answered, if anything yet."""
        return self._answer

    @property
    def published(self) -> bool:
        """Whether the answer is final for the driver (its reply has been written)."""
        return self._published

    @property
    def back_in_next(self) -> bool:
        """Whether the runtime answered and is waiting in `next` again: whatever it wrote
        before asking, it has written (Lambda would freeze it here)."""
        return self._held and self._answer is not None

    @property
    def next_at(self) -> float | None:
        """Monotonic time the child took the event."""
        return self._next_at

    @property
    def answered_at(self) -> float | None:
        """Monotonic time the child answered (or posted its init error)."""
        return self._answered_at

    def take_next(self) -> Invocation | Hold | NotAllowed:
        """The event; `Hold` when the one invocation is over (the driver is told)."""
        with self._lock:
            refusal = self._fire(Event.NEXT)
            if refusal is not None:
                return refusal
            if self._phase is Phase.INVOKED:
                self._next_at = time.monotonic()
                return self.invocation
            self._held = True
        self._on_change()
        return Hold()

    def hold(self) -> None:
        """Block a `next` call until the child is stopped: one invocation per task."""
        self._closed.wait()

    def check_answer(self, request_id: str) -> InvalidRequestId | NotAllowed | None:
        """Refuse an answer for the wrong id or in the wrong state, before its body is used."""
        with self._lock:
            return self._check_answer(request_id)

    def record_answer(self, request_id: str, answer: Answer) -> Refusal | None:
        """Record the runtime's answer; a late one is recorded as `LateAnswer` and refused."""
        with self._lock:
            refusal = self._check_answer(request_id)
            if refusal is not None:
                return refusal
            now = time.monotonic()
            late = now > self._deadline
            self._fire(Event.LATE_ANSWER if late else Event.ANSWER)
            self._answer = LateAnswer() if late else answer
            self._answered_at = now
        return TooLate() if late else None

    def record_init_error(self, error: FunctionErrorBody) -> NotAllowed | None:
        """Record `init/error`, which is only allowed before the first `next`
        (docs/runtime-api.md#init-error)."""
        with self._lock:
            refusal = self._fire(Event.INIT_ERROR)
            if refusal is None:
                self._answer = PostedError("init", error)
                self._answered_at = time.monotonic()
            return refusal

    def register_extension(self) -> NotAllowed | None:
        """Allow an extension to register, which Lambda allows during init only."""
        with self._lock:
            return self._fire(Event.REGISTER_EXTENSION)

    def publish(self) -> None:
        """Let the driver act on what has been recorded (called once the reply is written: a
        client stopped before its 202 arrives would log a spurious error)."""
        with self._lock:
            self._published = self._answer is not None
        self._on_change()

    def close(self) -> Answer | None:
        """Freeze the outcome: nothing the child sends from now on counts. This is the runner's
        decision (exit, timeout), allowed from every phase. Held `next` calls stay held, so
        the child is stopped while it waits, not woken to an empty reply."""
        with self._lock:
            self._phase = Phase.CLOSED
            return self._answer

    def release(self) -> None:
        """End every held `next` call (the child is gone, or the server is stopping)."""
        self._closed.set()

    def _fire(self, event: Event) -> NotAllowed | None:
        target = _TRANSITIONS[self._phase].get(event)
        if target is None:
            return NotAllowed(self._phase, event)
        self._phase = target
        return None

    def _check_answer(self, request_id: str) -> InvalidRequestId | NotAllowed | None:
        if request_id != self.invocation.request_id or self._phase is Phase.INIT:
            return InvalidRequestId()
        if Event.ANSWER not in _TRANSITIONS[self._phase]:
            return NotAllowed(self._phase, Event.ANSWER)
        return None
