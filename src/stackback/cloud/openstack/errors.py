"""Translating openstacksdk and keystoneauth exceptions into stackback's cloud errors.

The status code decides, never the message text, except to tell a quota refusal
(403/413 with "quota" in it) from another refusal.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as sdk_exc

from stackback.errors import (
    CloudBusy,
    CloudError,
    CloudNotFound,
    CloudRejected,
    CloudUnavailable,
    CloudUnreachable,
    InvalidInput,
    QuotaExceeded,
    StackbackError,
)

TRANSIENT_4XX = frozenset({408, 425, 429})
#: The status an openstacksdk exception class stands for when it carries no response
#: (``find_*`` raises ``NotFoundException`` without one).
IMPLIED_STATUS: tuple[tuple[type[sdk_exc.HttpException], int], ...] = (
    (sdk_exc.BadRequestException, 400),
    (sdk_exc.ForbiddenException, 403),
    (sdk_exc.NotFoundException, 404),
    (sdk_exc.ConflictException, 409),
    (sdk_exc.PreconditionFailedException, 412),
)

UNREACHABLE: tuple[type[Exception], ...] = (
    ksa_exc.ConnectFailure,
    ksa_exc.SSLError,
    ksa_exc.DiscoveryFailure,
)
"""keystoneauth's ways of saying that nothing answered where the cloud should be (a wrong
auth URL, a refused connection, a bad certificate); a timeout is not one of them."""


def error_for_status(status: int | None, message: str) -> CloudError:
    """The stackback error for an HTTP error status (``None``: no usable status)."""
    if status is None or status >= 500 or status in TRANSIENT_4XX:
        return CloudUnavailable(message)
    if status == 404:
        return CloudNotFound(message)
    if status == 409:
        return CloudBusy(message)
    if status == 413 or (status == 403 and "quota" in message.lower()):
        return QuotaExceeded(message)
    return CloudRejected(message)


def translate(exc: BaseException, what: str) -> StackbackError:
    """The stackback error for an exception raised by openstacksdk/keystoneauth.

    ``what`` says what was attempted, naming the cloud (``"createImage of server X on
    cloud 'prod'"``); it starts the message.
    """
    if isinstance(exc, sdk_exc.HttpException):
        status = exc.status_code or next(
            (code for cls, code in IMPLIED_STATUS if isinstance(exc, cls)), None
        )
        detail = exc.details or str(exc)
        return error_for_status(status, f"{what}: HTTP {status}: {detail}")
    if isinstance(exc, ksa_exc.HttpError):
        status = exc.http_status
        if status == 401:
            return CloudRejected(f"{what}: authentication refused (401): {exc.message}")
        return error_for_status(status, f"{what}: HTTP {status}: {exc.message}")
    if isinstance(exc, sdk_exc.ConfigException | ksa_exc.AuthPluginException):
        return InvalidInput(f"{what}: invalid cloud configuration: {exc}", field="cloud")
    if isinstance(exc, sdk_exc.DuplicateResource):
        return CloudRejected(f"{what}: ambiguous name: {exc}")
    if isinstance(exc, sdk_exc.EndpointNotFound | ksa_exc.EndpointNotFound):
        return CloudRejected(f"{what}: service not in the catalog: {exc}")
    if isinstance(exc, UNREACHABLE):
        return CloudUnreachable(f"{what}: cannot reach the cloud: {type(exc).__name__}: {exc}")
    if isinstance(exc, sdk_exc.SDKException | ksa_exc.ClientException):
        return CloudUnavailable(f"{what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, ConnectionRefusedError):
        return CloudUnreachable(f"{what}: cannot reach the cloud: {type(exc).__name__}: {exc}")
    if isinstance(exc, ConnectionError | TimeoutError):
        return CloudUnavailable(f"{what}: {type(exc).__name__}: {exc}")
    raise exc


@contextmanager
def cloud_errors(what: str) -> Iterator[None]:
    """Re-raise openstacksdk/keystoneauth failures inside the block as stackback errors."""
    try:
        yield
    except StackbackError:
        raise
    except (
        sdk_exc.SDKException,
        ksa_exc.ClientException,
        ConnectionError,
        TimeoutError,
    ) as exc:
        raise translate(exc, what) from exc
