"""The device's TOML configuration, validated at start.

The file is found from ``--config``, else ``KIOSK_CONFIG``, else
``/etc/kiosk/kiosk.toml``. A bad file stops start-up with one line that names the
key, the value and what was expected. Amounts are integers in minor units.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
import zoneinfo
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from kiosk.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_PATH = Path("/etc/kiosk/kiosk.toml")
Action = Literal["allow", "warn", "require_reason", "block"]

# Practical exponents. ISO 4217 gives IDR two decimals, but nobody in Indonesia
# pays in sen, and systems that mix the two show amounts a hundred times off.
CURRENCY_EXPONENTS = {"IDR": 0, "JPY": 0, "KRW": 0, "VND": 0, "KWD": 3, "BHD": 3}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DeviceSection(Section):
    id: str = Field("KIOSK-01", description="Device id; also its broker username.")
    name: str = Field("Collector kiosk", description="Shown on screen and receipts.")
    mode: Literal["vehicle", "branch"] = "vehicle"
    branch: str = Field("", description="Branch name printed on receipts.")
    currency: str = "IDR"
    currency_exponent: int | None = Field(None, ge=0, le=4)
    rounding: Literal["half_up", "half_even"] = "half_up"
    locale: Literal["id", "en"] = "id"
    language: Literal["id", "en"] = "id"
    timezone: str = "Asia/Jakarta"
    data_dir: Path = Path("/var/lib/kiosk")

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}", value):
            raise ValueError(
                "expected 1-32 letters, digits, '-' or '_' (it is an MQTT topic level)"
            )
        return value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Z]{3}", value):
            raise ValueError("expected a three-letter ISO 4217 code such as IDR")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("expected an IANA time zone such as Asia/Jakarta") from exc
        return value

    @property
    def exponent(self) -> int:
        if self.currency_exponent is not None:
            return self.currency_exponent
        return CURRENCY_EXPONENTS.get(self.currency, 2)

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


class CashSection(Section):
    max_in_hand: int = Field(
        10_000_000, ge=0, lt=10**15, description="Cash a collector may hold."
    )
    max_payment: int = Field(
        5_000_000, ge=0, lt=10**15, description="Largest single payment."
    )
    daily_cap: int = Field(
        0, ge=0, lt=10**15, description="Collected per day; 0 means none."
    )
    warn_ratio: float = Field(0.8, gt=0, le=1, description="Warn from this share.")
    allow_overpayment: bool = Field(False, description="Keep overpayment as credit.")
    max_day_age_h: int = Field(24, ge=1, description="A day open longer must close.")
    offline_limit_h: int = Field(72, ge=1, description="Oldest unsent money event.")

    @field_validator("max_in_hand", "max_payment", "daily_cap", mode="before")
    @classmethod
    def _integer_amount(cls, value: Any) -> Any:
        if isinstance(value, float | str | bool):
            raise ValueError("expected an integer in minor units")
        return value


class LocationSection(Section):
    radius_m: int = Field(200, ge=1, description="Default radius around a customer.")
    max_fix_age_s: int = Field(60, ge=1, description="An older fix counts as none.")
    max_accuracy_m: int = Field(150, ge=1, description="A worse fix counts as none.")
    outside: Action = "require_reason"
    no_fix: Action = "warn"


class GpsSection(Section):
    source: str = Field("", description="A GPS connection string; empty for none.")
    track_interval_s: int = Field(30, ge=1, description="Track point when moving.")
    track_distance_m: int = Field(50, ge=1, description="Track point after moving.")
    parked_interval_s: int = Field(600, ge=1, description="Track point when parked.")
    track_retention_days: int = Field(30, ge=1)

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        return _scheme(
            value, ("serial:", "gpsd:", "replay:", "fixed:"), "a GPS connection string"
        )


def _scheme(value: str, schemes: tuple[str, ...], what: str) -> str:
    if value and not value.startswith(schemes):
        raise ValueError(f"expected {what} starting {', '.join(schemes)} (or empty)")
    return value


class PrinterSection(Section):
    connection: str = Field("", description="A printer connection string; empty: none.")
    columns: Literal[32, 42, 48] = 32
    profile: str = Field("POS-5890", description="python-escpos profile name.")
    native_qr: bool = True
    timeout_s: float = Field(10.0, gt=0)

    @field_validator("connection")
    @classmethod
    def _connection(cls, value: str) -> str:
        return _scheme(
            value,
            ("usb:", "serial:", "tcp:", "file:", "dir:"),
            "a printer connection string",
        )


class ReceiptSection(Section):
    header: list[str] = Field(default_factory=list)  # type: ignore[arg-type]
    footer: list[str] = Field(default_factory=list)  # type: ignore[arg-type]
    amount_in_words: bool = True


class BrokerSection(Section):
    url: str = Field("", description="mqtt://host:port or mqtts://host:port; empty.")
    username: str = ""
    password: SecretStr = SecretStr("")
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive_s: int = Field(30, ge=5)
    inflight: int = Field(200, ge=1, le=65535)
    session_expiry_s: int = Field(7 * 24 * 3600, ge=0)
    state_interval_s: int = Field(300, ge=5)
    retention_days: int = Field(14, ge=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        match = re.fullmatch(r"mqtts?://(\[[0-9A-Fa-f:.]+\]|[^:/\s]+):(\d{1,5})", value)
        if value and (match is None or not 0 < int(match.group(2)) < 65536):
            raise ValueError("expected mqtt://HOST:PORT or mqtts://HOST:PORT")
        return value


class TimeSection(Section):
    trust: Literal["system", "network_or_gps"] = "system"
    max_correction_log_s: int = Field(5, ge=0)


class SecuritySection(Section):
    key_file: Path | None = None
    max_command_bytes: int = Field(64 * 1024, ge=1024)
    max_assignment_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    customer_retention_days: int = Field(7, ge=0)


class UiSection(Section):
    theme: Literal["default", "high_contrast"] = "default"
    idle_timeout_s: int = Field(300, ge=10)


class GpioSection(Section):
    enabled: bool = False
    status_led: int | None = None
    buzzer: int | None = None
    panic_button: int | None = None
    lid_switch: int | None = None
    reprint_button: int | None = None
    panic_hold_s: float = Field(2.0, gt=0)


class HqSection(Section):
    db_url: str = "sqlite:///hq.db"
    share_group: str = ""
    keys_dir: Path = Path("/etc/kiosk/hq-keys")
    client_id: str = "kiosk-hq"
    resync_wait_s: float = Field(5.0, gt=0)


class Config(Section):
    device: DeviceSection = Field(default_factory=DeviceSection)  # type: ignore[arg-type]
    cash: CashSection = Field(default_factory=CashSection)  # type: ignore[arg-type]
    location: LocationSection = Field(default_factory=LocationSection)  # type: ignore[arg-type]
    gps: GpsSection = Field(default_factory=GpsSection)  # type: ignore[arg-type]
    printer: PrinterSection = Field(default_factory=PrinterSection)  # type: ignore[arg-type]
    receipt: ReceiptSection = Field(default_factory=ReceiptSection)  # type: ignore[arg-type]
    broker: BrokerSection = Field(default_factory=BrokerSection)  # type: ignore[arg-type]
    time: TimeSection = Field(default_factory=TimeSection)  # type: ignore[arg-type]
    security: SecuritySection = Field(default_factory=SecuritySection)  # type: ignore[arg-type]
    ui: UiSection = Field(default_factory=UiSection)  # type: ignore[arg-type]
    gpio: GpioSection = Field(default_factory=GpioSection)  # type: ignore[arg-type]
    hq: HqSection = Field(default_factory=HqSection)  # type: ignore[arg-type]

    source: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        if self.cash.max_payment and self.cash.max_payment > self.cash.max_in_hand > 0:
            raise ValueError(
                "cash.max_payment is larger than cash.max_in_hand; "
                "such a payment could never be taken"
            )
        return self

    @property
    def data_dir(self) -> Path:
        return self.device.data_dir

    def device_key(self) -> bytes | None:
        """The device's command and receipt key, or None when none is configured."""
        path = self.security.key_file
        if path is None:
            return None
        return read_key_file(path)


def read_key_file(path: Path) -> bytes:
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"security.key_file: cannot read {path}: {exc.strerror}"
        ) from exc
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise ConfigError(
            f"security.key_file: {path} must hold 64 hex digits (32 random bytes)"
        )
    return bytes.fromhex(text)


def _describe(error: Any) -> str:
    key = ".".join(str(part) for part in error["loc"])
    value = error.get("input")
    message = error["msg"]
    message = message.removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (see config/kiosk.example.toml for every key)"
    if error["type"] == "missing":
        return f"{key}: missing"
    if not key:  # a check across keys: its message names them, not the values
        return str(message)
    return f"{key} = {value!r}: {message}"


def parse_config(data: dict[str, Any], source: Path | None = None) -> Config:
    """Validate a parsed TOML document, raising ConfigError with one line."""
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        where = f"{source}: " if source else ""
        first = exc.errors()[0]
        raise ConfigError(f"config error: {where}{_describe(first)}") from None
    config.source = source
    return config


def find_config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("KIOSK_CONFIG")
    if env:
        return Path(env)
    return DEFAULT_PATH


def _anchor(spec: str, schemes: tuple[str, ...], base: Path) -> str:
    """A connection string's relative path, read against the config's folder."""
    for scheme in schemes:
        if spec.startswith(scheme):
            rest = spec.removeprefix(scheme)
            if rest and not rest.startswith("/"):
                return f"{scheme}{base / rest}"
    return spec


def load_config(explicit: str | os.PathLike[str] | None = None) -> Config:
    """Find, read and validate the configuration file."""
    path = find_config_path(explicit)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"no configuration at {path} (looked at --config, then KIOSK_CONFIG, "
            f"then {DEFAULT_PATH}); copy config/kiosk.example.toml there and edit it"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from None

    if not raw.strip():
        raise ConfigError(
            f"config error: {path}: the file is empty; copy "
            "config/kiosk.example.toml there and edit it"
        )
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config error: {path}: not valid TOML: {exc}") from None

    config = parse_config(data, path)

    # A relative data_dir or key file is read against the config file's folder,
    # so a config carried around with its data works from any working directory.
    base = path.resolve().parent
    if not config.device.data_dir.is_absolute():
        config.device.data_dir = base / config.device.data_dir
    if config.security.key_file and not config.security.key_file.is_absolute():
        config.security.key_file = base / config.security.key_file
    if not config.hq.keys_dir.is_absolute():
        config.hq.keys_dir = base / config.hq.keys_dir
    config.printer.connection = _anchor(
        config.printer.connection, ("dir:", "file:"), base
    )
    config.gps.source = _anchor(config.gps.source, ("replay:",), base)
    log.debug("configuration loaded from %s", path)
    return config
