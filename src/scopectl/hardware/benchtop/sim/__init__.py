"""The simulated benchtop: Micro-Manager devices in pure Python (devices.py) sharing one simulated world (world.py)."""
