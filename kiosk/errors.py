"""One exception tree for the whole product.

Every error carries a sentence a person can act on and the command-line exit code
that goes with it: 1 refused by a rule, 2 bad input, 3 a broken configuration,
store or device. Leaves also inherit the matching built-in so that callers who
only know ``ValueError`` or ``OSError`` still catch them.
"""

from __future__ import annotations

from typing import ClassVar


class KioskError(Exception):
    """Base of every error the product raises on purpose."""

    exit_code: ClassVar[int] = 3
    code: ClassVar[str] = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- refusals: a rule said no (exit 1) ---------------------------------------


class Refused(KioskError):
    """A business rule refused the action; the message says what to do."""

    exit_code = 1
    code = "refused"


class LimitRefused(Refused):
    code = "cash_limit"


class Overpayment(Refused):
    code = "overpayment"


class LocationRefused(Refused):
    code = "location"


class ReasonRequired(LocationRefused):
    code = "reason_required"


class LockedOut(Refused):
    code = "locked_out"


class WrongPin(Refused):
    code = "wrong_pin"


class DayClosed(Refused):
    code = "day_closed"


class DeviceLocked(Refused):
    code = "device_locked"


class ClockUntrusted(Refused):
    code = "clock_untrusted"


class OfflineTooLong(Refused):
    code = "offline_limit"


class NotAllowed(Refused):
    code = "not_allowed"


# --- bad input (exit 2) -------------------------------------------------------


class BadInput(KioskError, ValueError):
    """Something typed or sent was malformed."""

    exit_code = 2
    code = "bad_input"


class AmountError(BadInput):
    code = "bad_amount"


class NotFound(BadInput, LookupError):
    code = "not_found"


class DocumentError(BadInput):
    """An assignment document was rejected; the message names the record path."""

    code = "bad_document"


class CommandRejected(BadInput):
    """A command from HQ was refused; the message is the reason sent back."""

    code = "command_rejected"


# --- broken configuration, store or device (exit 3) --------------------------


class ConfigError(KioskError):
    code = "config"


class StoreError(KioskError):
    code = "store"


class DiskFull(StoreError, OSError):
    code = "disk_full"


class DeviceError(KioskError, OSError):
    """A piece of hardware could not be opened or talked to."""

    code = "device"


class PrinterError(DeviceError):
    code = "printer"


class GpsError(DeviceError):
    code = "gps"


class ServiceUnavailable(KioskError, ConnectionError):
    code = "service"
