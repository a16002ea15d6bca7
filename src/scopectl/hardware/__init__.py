"""Device drivers and their simulators: LED ring, phone camera, benchtop microscope, and the rig.

Each device is one folder: its interface, driver(s), protocol and configuration, and a ``sim`` package
with the simulators that speak the device's real protocol::

    ledring/   LedRing, SerialLedRing, FirmataLedRing, protocol, firmata, link, config    sim/
    phone/     PhoneCamera, link (ADB), config, keys, parsing, metadata                   sim/
    benchtop/  Benchtop (Micro-Manager), engine, focus                                    sim/

:mod:`scopectl.hardware.rig` opens the three devices together, from ``rig.yaml`` or as the simulated rig;
it is the one place that wires simulators to drivers (over their real transports).  Drivers never import
a ``sim`` package, nor does a device package's ``__init__`` (import-linter contracts check both).

This package may import :mod:`scopectl.errors`, :mod:`scopectl.config`, :mod:`scopectl.store` (tile
records), :mod:`scopectl.twin` (what the simulators render) and the vendor libraries (pyserial,
adb-shell, pymmcore-plus).  Nothing under ``scopectl.registration``, ``scopectl.learn``,
``scopectl.evaluation``, ``scopectl.twin``, ``scopectl.store``, ``scopectl.stitching`` or
``scopectl.imageio`` may import it (an import-linter contract checks it).
"""

import os

# pymmcore-plus opens a log file in the home directory when imported unless told otherwise: no file
# (scopectl acquire logs it under the data root: scopectl.hardware.benchtop.logfile).
os.environ.setdefault("PYMM_LOG_FILE", os.devnull)  # "0" is not honoured by pymmcore-plus 0.x
