"""Every error the pack raises on purpose, in one tree. `str(error)` is the whole message a user
sees on the node: what happened, and what to do about it.

    SDBridgeError                   the root: catch it to catch anything the pack means to say
    ├── InputError (ValueError)     an input value the node cannot use; names the input and the fix
    ├── MissingKeyError             no API key for a provider; says both ways to set one
    ├── BudgetExceeded (ValueError) a spending cap would be passed; nothing was sent
    ├── UnsafePath (OSError)        a path under the pack's folder leads out of it; nothing was
    │                               written or deleted
    ├── MaybeSent                   the request journal was damaged: this request may already have
    │                               been sent (and paid for), so it was not sent again
    └── ProviderError               a provider call failed; carries provider, status, stage, request id
        └── MaybeCharged            ...after the request may have reached the provider: it may have
                                    made (and billed) the image, so it was not sent again

Subclasses elsewhere narrow a branch (params.ValidationError, local CheckpointError and
PromptTooComplex are InputErrors). Callers act on a type or a field, never on message words:
`fields()` is what the node tells the web extension when it fails ("sdbridge.failed").

ComfyUI titles its error card with the exception's module path and class name; every class here
shows as `sdbridge.<Name>` (set once, below), as the cards always have.
"""

from __future__ import annotations

from typing import Any

from . import runtime

CARD_MODULE = "sdbridge"  # what ComfyUI's error card shows before the class name


class SDBridgeError(Exception):
    """The root of every error the pack raises on purpose."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__module__ = CARD_MODULE

    def fields(self) -> dict[str, Any]:
        """What a caller may act on, as data (the web extension's toast reads it)."""
        return {"error": type(self).__name__, "maybe_charged": False}


SDBridgeError.__module__ = CARD_MODULE


class InputError(SDBridgeError, ValueError):
    """A bad input value; the message names the input, the problem and the fix."""


class MissingKeyError(SDBridgeError, RuntimeError):
    """No key for a provider (`provider`, its table entry); the message says both ways to set one."""

    def __init__(self, provider: Any, message: str):
        self.provider = provider
        super().__init__(message)

    def fields(self) -> dict[str, Any]:
        return {**super().fields(), "provider": self.provider.id}


class BudgetExceeded(SDBridgeError, ValueError):
    """A spending cap would be passed: nothing was sent."""


class UnsafePath(SDBridgeError, OSError):
    """A path the pack was about to write or delete leads out of its user folder (a link, `..`,
    an absolute name read from a file): refused. An OSError, so the pack's bookkeeping skips it
    the way it skips a file it cannot write."""


class MaybeSent(SDBridgeError, RuntimeError):
    """The request journal could not be read (it was kept aside): the same request may already
    have been sent and paid for, so it was not sent again."""


class ProviderError(SDBridgeError, RuntimeError):
    """A failed provider call. `provider` is the provider table's entry, `status` the HTTP status
    (None when no answer came), `stage` the step that failed ("submit" when a queue API refused
    the job itself; "status", "result", "download"; "" for a single call), and `request_id` the
    provider's id of the request when it gave one (Segmind's job id, SinkIn's inf_id). All are
    set here, at construction. Keys are scrubbed from the message and the id (whatever a server
    echoed into them)."""

    def __init__(self, provider: Any, message: str, status: int | None = None, *, stage: str = "",
                 request_id: str | None = None):
        self.provider = provider
        self.status = status
        self.stage = stage
        self.request_id = None if request_id is None else runtime.scrub(str(request_id))[:128]
        super().__init__(runtime.scrub(f"{provider.name}: {message}"))

    def fields(self) -> dict[str, Any]:
        return {**super().fields(), "maybe_charged": isinstance(self, MaybeCharged), "provider": self.provider.id,
                "status": self.status, "stage": self.stage, "request_id": self.request_id,
                "billing_page": self.provider.billing_page}


class MaybeCharged(ProviderError):
    """The request may have reached the provider and been billed (its answer was lost, or came
    after the work): it was not sent again, and the cap counts its estimate."""
