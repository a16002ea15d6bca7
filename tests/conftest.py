"""Pytest configuration: hardware options, and the ``external(name, ...)`` marker.

``@pytest.mark.external("simavr")`` says a test needs an optional capability of this machine.  Before the
test runs, the capability is probed by using it (:mod:`scopectl.capabilities`, the same probes as
``scopectl doctor``).  When it is missing the test is skipped with the reason and the Debian package to
install; with ``SCOPECTL_REQUIRE_EXTERNAL=1`` (set by ``.ci/run``) it fails with the same text.

Fixtures that need a capability are listed in :data:`FIXTURE_CAPABILITIES`; every test that uses one gets
the marker at collection, so no test can forget it.  Other helpers live in ``tests/support.py``.
"""

from __future__ import annotations

import os

import pytest

from scopectl.capabilities import CAPABILITIES, probe

#: Fixtures that need a capability, and which.
FIXTURE_CAPABILITIES: dict[str, tuple[str, ...]] = {
    "firmware_elf": ("avr-toolchain",),
    "fil_harness": ("avr-toolchain", "simavr"),
    "fil_module": ("avr-toolchain", "simavr"),
    "official_adb": ("adb",),
}


def external_required() -> bool:
    """True when a missing capability must fail the test run (CI sets ``SCOPECTL_REQUIRE_EXTERNAL=1``)."""
    return os.environ.get("SCOPECTL_REQUIRE_EXTERNAL", "") not in ("", "0")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("scopectl hardware")
    group.addoption("--ledring-url", default=None, help="serial URL of a real LED-ring board (our firmware)")
    group.addoption("--firmata-port", default=None, help="serial device of a real StandardFirmata board")
    group.addoption("--phone-serial", default=None, help="host:port of a real phone with ADB over TCP")
    group.addoption("--mm-config", default=None, help="Micro-Manager configuration file of a real benchtop")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        needed = sorted({cap for fx in names for cap in FIXTURE_CAPABILITIES.get(fx, ())})
        if needed:
            item.add_marker(pytest.mark.external(*needed))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("external"):
        for name in mark.args:
            if name not in CAPABILITIES:
                pytest.fail(
                    f"external({name!r}): unknown capability; known: {', '.join(CAPABILITIES)}", pytrace=False
                )
            result = probe(name)
            if result.ok:
                continue
            if external_required():
                pytest.fail(f"SCOPECTL_REQUIRE_EXTERNAL=1 but {result.reason()}", pytrace=False)
            pytest.skip(result.reason())
