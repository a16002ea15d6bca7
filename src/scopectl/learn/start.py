"""The starting model that ships with scopectl, and how training starts from it.

``scopectl train --start twin`` starts the fast recipe from ``scopectl/data/start/``: a network of this
architecture trained on the digital twin's three stains (lung in Masson's trichrome, Pap smear, blood smear)
seen through randomised phone models (PSF width and colour dependence, vignetting, veiling glare, noise,
auto exposure and white balance, tone curve, sharpening, JPEG quality 60–95); ``benchmarks/pretrain_start.py``
rebuilds it and its card says how it was made.  It is not the default: on the cross-domain bench's real
skin tissue it helped one foreign phone a little and made another much worse than a seeded start
(docs/performance.md), so the twin's prior is opt-in.

``--start none`` (the default) trains from the seeded initialisation; ``--start DIR`` starts from any model
directory of the same architecture, ratio and recipe (fine-tuning).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from scopectl.errors import ConfigError
from scopectl.learn.modelio import WEIGHTS_NAME, load_model
from scopectl.learn.network import EnhanceNet

__all__ = ["load_start", "shipped_start"]


def shipped_start() -> Path | None:
    """The shipped starting model's directory, or None where the package was built without it."""
    path = Path(str(resources.files("scopectl") / "data" / "start"))
    return path if (path / WEIGHTS_NAME).is_file() else None


def load_start(model: EnhanceNet, start: str, *, recipe: str, ratio: tuple[int, int]) -> str:
    """Load the starting weights ``start`` names into ``model``; return what the card records.

    ``none`` leaves ``model`` as initialised (returns ``""``); ``twin`` is the shipped start; anything else
    is a model directory.

    Raises
    ------
    ConfigError
        If the start model does not fit the network being trained, or the package has no shipped start.
    ModelError
        If a named start model cannot be read.
    """
    if start == "none":
        return ""
    path = shipped_start() if start == "twin" else Path(start)
    if path is None:
        raise ConfigError(
            "this scopectl was built without its starting model (scopectl/data/start/).",
            hint="Reinstall scopectl, rebuild it with benchmarks/pretrain_start.py, or pass --start none.",
        )
    net, card = load_model(path)
    mismatch = []
    if card.ratio_pq != ratio:
        mismatch.append(f"its ratio is {card.ratio}, the dataset's {ratio[0]}/{ratio[1]}")
    if net.residual != model.residual:
        mismatch.append(f"its global residual path does not fit the {recipe} recipe")
    if mismatch:
        raise ConfigError(
            f"{path}: cannot start from this model: {'; '.join(mismatch)}.",
            hint="Pick a model trained for the same ratio and recipe, or pass --start none.",
        )
    model.load_state_dict(net.state_dict())
    return f"{card.name} (weights sha256 {card.weights_sha256[:16]})"
