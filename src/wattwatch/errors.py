"""The one hierarchy of wattwatch errors; the web layer maps them to HTTP answers in one place.

WattwatchError
├── ConfigError            unsafe or impossible settings
├── DataDirLocked          another process owns the data directory
├── SchemaTooNew           the data was written by a newer wattwatch
├── NotFound               no such record (or not visible to the caller: tenant isolation)
├── Conflict               the record already exists / state forbids it
│   └── NoModel            no trained AI model for the device yet
├── InvalidInput           a request that cannot be carried out as given
├── AuthError              missing or wrong credentials
│   └── Forbidden          authenticated, but the role does not allow it
├── RateLimited            too many attempts or readings; retry later (``retry_after_s``)
├── PayloadTooLarge        a request body over the size limit
├── DeviceTimeout          a device did not answer a command in time
├── Overloaded             ingest queue full for too long
├── Unavailable            an optional part is not installed (e.g. the [ml] extra)
└── RemoteError            a wattwatch server or broker refused a client or was unreachable
"""

from __future__ import annotations


class WattwatchError(Exception):
    code = "error"


class ConfigError(WattwatchError):
    code = "config"


class DataDirLocked(WattwatchError):
    code = "data_dir_locked"


class SchemaTooNew(WattwatchError):
    code = "schema_too_new"


class NotFound(WattwatchError):
    code = "not_found"


class Conflict(WattwatchError):
    code = "conflict"


class NoModel(Conflict):
    code = "no_model"


class InvalidInput(WattwatchError):
    code = "invalid_input"


class AuthError(WattwatchError):
    code = "unauthorized"


class Forbidden(AuthError):
    code = "forbidden"


class RateLimited(WattwatchError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        # When known: HTTP answers it as Retry-After (whole seconds, rounded up).
        self.retry_after_s = retry_after_s


class PayloadTooLarge(WattwatchError):
    code = "too_large"


class DeviceTimeout(WattwatchError):
    code = "device_timeout"


class Overloaded(WattwatchError):
    code = "overloaded"


class Unavailable(WattwatchError):
    code = "unavailable"


class RemoteError(WattwatchError):
    """Client side (simulator, collector): the server answered an error or was unreachable."""

    code = "remote"
