"""The digital twin: virtual slides and physically modelled benchtop and phone microscopes.

Pure numpy / scipy / OpenCV; no hardware imports. Everything is deterministic given its seeds.

Layer: beside hardware, as the world its simulators render.  It may import only the low modules
(:mod:`scopectl.metrics`, errors ...); hardware, the CLI and the benchmarks use it, and no image-processing
package imports it (import-linter contracts).  See ``docs/architecture.md``.

>>> from scopectl.twin import make_slide, BenchtopModel, PhoneModel, Illumination
>>> slide = make_slide("lung", seed=1)
>>> bench = BenchtopModel().render(slide, center_x_um=2000, center_y_um=2000, shape=(256, 256))
>>> cap = PhoneModel().capture(slide, center_x_um=2000, center_y_um=2000,
...                            illumination=Illumination.white(), seed=3, shape=(128, 128))
"""

from __future__ import annotations

from scopectl.twin.benchtop import BenchtopModel, BenchtopParams
from scopectl.twin.illumination import Illumination, IlluminationGeometry
from scopectl.twin.phone import PhoneCapture, PhoneModel, PhoneParams
from scopectl.twin.slide import BarTargetSlide, Slide, make_slide, slide_from_image
from scopectl.twin.truth import PhoneGroundTruth

__all__ = [
    "BarTargetSlide",
    "BenchtopModel",
    "BenchtopParams",
    "Illumination",
    "IlluminationGeometry",
    "PhoneCapture",
    "PhoneGroundTruth",
    "PhoneModel",
    "PhoneParams",
    "Slide",
    "make_slide",
    "slide_from_image",
]
