"""Device drivers and their simulators: LED ring, phone camera, benchtop microscope.

Nothing under ``scopectl.registration``, ``scopectl.learn``, ``scopectl.evaluation``, ``scopectl.twin`` or
``scopectl.store`` may import this package (an import-linter contract checks it).
"""
