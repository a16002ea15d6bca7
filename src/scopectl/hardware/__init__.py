"""Device drivers and their simulators: LED ring, phone camera, benchtop microscope.

Nothing under ``scopectl.registration``, ``scopectl.learn``, ``scopectl.evaluation``, ``scopectl.twin`` or
``scopectl.store`` may import this package (an import-linter contract checks it).
"""

import os

# pymmcore-plus opens a log file in the home directory when imported unless told otherwise: no file
# (scopectl acquire logs it under the data root: scopectl.hardware.benchtop.logfile).
os.environ.setdefault("PYMM_LOG_FILE", os.devnull)  # "0" is not honoured by pymmcore-plus 0.x
