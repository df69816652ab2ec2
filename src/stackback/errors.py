"""The one exception tree of stackback.

Every error carries a short ``error_id`` so that a message seen by an operator
(CLI line, API body, run record) can be found again in the logs. Mapping errors
to exit codes and HTTP statuses happens only at the edges (``stackback.cli``,
the API), never here.
"""

from __future__ import annotations

import uuid


class StackbackError(Exception):
    """Root of every error stackback raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, error_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_id = error_id or uuid.uuid4().hex[:12]

    def to_dict(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message, "error_id": self.error_id}


class InvalidInput(StackbackError):
    """The caller gave a value stackback cannot accept (bad cron, zone, count...)."""

    code = "invalid-input"

    def __init__(self, message: str, *, field: str | None = None, error_id: str | None = None):
        super().__init__(message, error_id=error_id)
        self.field = field


class NotFound(StackbackError):
    """A named policy, run, backup or cloud resource does not exist."""

    code = "not-found"


class Conflict(StackbackError):
    """The request conflicts with the current state (duplicate name, protected backup...)."""

    code = "conflict"


class HostBusy(Conflict):
    """The server's compute host already has as many snapshots running as the engine allows."""

    code = "host-busy"


class PolicyChanged(Conflict):
    """A policy was changed by someone else between reading it and writing a change to it."""

    code = "policy-changed"


class Unauthenticated(StackbackError):
    """The request carries no credentials, or credentials that do not prove who it is."""

    code = "unauthenticated"


class Forbidden(StackbackError):
    """The caller is known but may not take this action (role, or another project)."""

    code = "forbidden"


class NotMigrated(StackbackError):
    """The database schema is missing or older than this code."""

    code = "not-migrated"


class SchemaTooNew(StackbackError):
    """The database schema is at a revision this code does not know (a newer stackback's)."""

    code = "schema-too-new"


class DatabaseUnavailable(StackbackError):
    """The database cannot be reached, opened or written (down, read-only, not a database)."""

    code = "database-unavailable"


class WaitTimedOut(StackbackError):
    """Waiting for a run ended before the run did (the run itself goes on)."""

    code = "wait-timed-out"

    def __init__(self, message: str, *, run_id: str, error_id: str | None = None) -> None:
        super().__init__(message, error_id=error_id)
        self.run_id = run_id


class LeaseLost(StackbackError):
    """A worker's lease on a run was taken over; its writes are fenced off."""

    code = "lease-lost"


class CloudError(StackbackError):
    """Something the cloud said or failed to say."""

    code = "cloud-error"
    retryable = False


class ServerLookupFailed(CloudError):
    """The cloud could not say whether a named server exists (unreachable, auth, 5xx)."""

    code = "server-lookup-failed"


class CloudBusy(CloudError):
    """The resource is busy (HTTP 409, e.g. a snapshot already in progress)."""

    code = "cloud-busy"
    retryable = True


class CloudUnavailable(CloudError):
    """A transient failure: 5xx, timeout, connection or Keystone hiccup."""

    code = "cloud-unavailable"
    retryable = True


class CloudUnreachable(CloudUnavailable):
    """The cloud cannot be reached at all: connection refused, no route, a TLS failure, no
    identity service at the auth URL. Retried for scheduled runs; an on-demand backup whose
    first call meets it fails at once (the operator is waiting and can fix the address)."""

    code = "cloud-unreachable"


class CloudNotFound(CloudError):
    """The cloud resource does not exist (or is not visible to this project)."""

    code = "cloud-not-found"


class CloudRejected(CloudError):
    """The cloud refused the request for good (4xx other than 404/409)."""

    code = "cloud-rejected"


class QuotaExceeded(CloudRejected):
    """The project's quota does not allow the request."""

    code = "quota-exceeded"


class IdentityUnknown(StackbackError):
    """``--self``: this machine's server id could not be found (no metadata service
    answered, no config drive is mounted)."""

    code = "identity-unknown"


class RunFailed(StackbackError):
    """A backup run cannot succeed; the message says why (recorded on the run)."""

    code = "run-failed"


class Unexpected(StackbackError):
    """An error stackback did not foresee (a bug); retried like a transient cloud error."""

    code = "internal-error"
    retryable = True
