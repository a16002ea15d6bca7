"""A simulated phone: an adbd on loopback TCP speaking the real ADB protocol, with a camera app.

Use it with the driver (:class:`scopectl.hardware.phone.PhoneCamera`), with adb-shell or with the official
``adb`` client::

    with SimulatedPhone(source) as phone:          # source.render_capture() -> (dng, jpeg, settings)
        camera = PhoneCamera(phone.address, profile="sim")

The driver never imports this package (an import-linter contract checks it); the simulated rig and the
tests do.  It depends on nothing of scopectl but itself: the images come from the ``CaptureSource`` it
is given.
"""

from __future__ import annotations

from scopectl.hardware.phone.sim.phone import KEYCODES, CaptureSource, PhoneFaults, SimCapture, SimPhoneState
from scopectl.hardware.phone.sim.server import SimulatedPhone

__all__ = ["KEYCODES", "CaptureSource", "PhoneFaults", "SimCapture", "SimPhoneState", "SimulatedPhone"]
