"""Evaluation: the paper's Tables 2 and 3 and Fig. 3 on held-out slides.

Owns held-out pairs from a slide store, their scores and the report (tables, figures).  The metrics
themselves are in the low module :mod:`scopectl.metrics`.  Layer: below hardware, above learning; it may
import learn, registration, stitching, the store and the low modules, never hardware, acquisition, the
twin, the exports (interop), the service or the CLI.  See ``docs/architecture.md``.
"""
