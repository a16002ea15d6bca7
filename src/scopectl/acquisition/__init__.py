"""Paired acquisition: protocols, plans and the engine that executes them against a rig."""
