"""Configuration of the LED ring and the factory that opens the right driver."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, model_validator

from scopectl.config.base import StrictModel
from scopectl.hardware.ledring.base import LedRing
from scopectl.hardware.ledring.firmata_ring import FirmataLedRing
from scopectl.hardware.ledring.serial_ring import SerialLedRing

__all__ = ["LedRingConfig", "open_led_ring"]


class LedRingConfig(StrictModel):
    """How to reach the LED ring.

    ``flavour: scopectl`` is the NeoPixel ring running scopectl's firmware (any pyserial URL);
    ``flavour: firmata`` is a board running plain StandardFirmata with a white LED on ``led_pin``
    (a device path only; ``port`` is accepted as another name for ``url``).

    Example (YAML)::

        flavour: scopectl
        url: /dev/ttyACM0        # or socket://raspberrypi:7000, hwgrep://Arduino, spy:///dev/ttyACM0
        timeout_s: 1.0
        retries: 3
    """

    flavour: Literal["scopectl", "firmata"] = "scopectl"
    url: str = Field(min_length=1, validation_alias=AliasChoices("url", "port"))
    baudrate: int | None = Field(default=None, ge=300, le=4_000_000)
    timeout_s: float = Field(default=1.0, gt=0.0, le=60.0)
    retries: int = Field(default=3, ge=0, le=20)
    connect_timeout_s: float = Field(default=3.0, gt=0.0, le=120.0)
    watchdog_ms: int | None = Field(default=None, ge=0, le=600000)
    verify: bool = True
    led_pin: int = Field(default=9, ge=2, le=69)
    battery_pin: int = Field(default=0, ge=0, le=15)
    divider_ratio: float = Field(default=2.0, ge=1.0, le=100.0)
    adc_reference_mv: float = Field(default=5000.0, gt=0.0, le=6000.0)
    setup_wait_s: float = Field(default=2.0, ge=0.0, le=30.0)
    layout: Literal["arduino", "arduino_nano", "arduino_mega"] = "arduino"

    @model_validator(mode="after")
    def _check_flavour(self) -> LedRingConfig:
        if self.flavour == "firmata" and "://" in self.url:
            raise ValueError(
                "flavour 'firmata' needs a serial device path (the Firmata driver does not open URLs)"
            )
        return self


def open_led_ring(cfg: LedRingConfig) -> LedRing:
    """Open the LED ring described by ``cfg`` (and check that it answers as expected).

    Raises
    ------
    DeviceNotFoundError, DeviceTimeoutError, DeviceProtocolError
        See :class:`~scopectl.hardware.ledring.serial_ring.SerialLedRing` and
        :class:`~scopectl.hardware.ledring.firmata_ring.FirmataLedRing`.
    """
    if cfg.flavour == "firmata":
        return FirmataLedRing(
            cfg.url,
            led_pin=cfg.led_pin,
            battery_pin=cfg.battery_pin,
            divider_ratio=cfg.divider_ratio,
            adc_reference_mv=cfg.adc_reference_mv,
            baudrate=cfg.baudrate or 57600,
            timeout_s=cfg.timeout_s,
            retries=cfg.retries,
            setup_wait_s=cfg.setup_wait_s,
            connect_timeout_s=cfg.connect_timeout_s,
            layout=cfg.layout,
        )

    return SerialLedRing(
        cfg.url,
        baudrate=cfg.baudrate or 115200,
        timeout_s=cfg.timeout_s,
        retries=cfg.retries,
        connect_timeout_s=cfg.connect_timeout_s,
        watchdog_ms=cfg.watchdog_ms,
        verify=cfg.verify,
    )
