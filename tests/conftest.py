"""Pytest configuration: hardware options (helpers live in ``tests/support.py``)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("scopectl hardware")
    group.addoption("--ledring-url", default=None, help="serial URL of a real LED-ring board (our firmware)")
    group.addoption("--firmata-port", default=None, help="serial device of a real StandardFirmata board")
    group.addoption("--phone-serial", default=None, help="host:port of a real phone with ADB over TCP")
    group.addoption("--mm-config", default=None, help="Micro-Manager configuration file of a real benchtop")
