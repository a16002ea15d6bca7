"""Paired acquisition: protocols, plans and the engine that executes them against a rig.

Owns the protocol files (``protocols/*.yaml``), the frozen acquisition plan saved into the store, the
engine that runs a plan on an opened rig, and the capture checks.  Layer: below the CLI, above hardware;
it may import hardware, registration (locating a capture), the store and the low modules (imageio, config,
metrics, errors), never the CLI or the service.  See ``docs/architecture.md``.
"""
