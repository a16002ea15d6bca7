"""Validated configuration: pydantic v2 models and file loading with clear errors.

A low module every layer may use; it imports only :mod:`scopectl.errors`.
"""

from scopectl.config.base import FrozenModel, StrictModel, load_mapping, load_model

__all__ = ["FrozenModel", "StrictModel", "load_mapping", "load_model"]
