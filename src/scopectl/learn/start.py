"""The starting model that ships with scopectl, and how training starts from it.

``scopectl train`` with the fast recipe starts from ``scopectl/data/start/`` when that model's pixel ratio
equals the dataset's: a network of this architecture trained on the digital twin's three stains (lung
H&E, Pap smear, blood smear) seen through randomised phone models (PSF width and colour dependence,
vignetting, veiling glare, noise, auto exposure and white balance, tone curve, sharpening, JPEG quality
60–95).  It has already learnt what every phone microscope needs — deblurring, denoising, JPEG clean-up, a
rough stain colour mapping — so the minutes a user trains on their own pairs go to their phone's specifics.
``benchmarks/pretrain_start.py`` rebuilds it; its card says how it was made.

``--start none`` trains from the seeded initialisation (the paper's recipe always does); ``--start DIR``
starts from any model directory of the same architecture and ratio.
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

    ``auto`` uses the shipped start for the fast recipe where its ratio and global residual path match,
    and otherwise leaves ``model`` as initialised (returns ``""``); ``none`` leaves it; a path must match.

    Raises
    ------
    ConfigError
        If a named start model does not fit the network being trained.
    ModelError
        If a named start model cannot be read.
    """
    if start == "none":
        return ""
    explicit = start != "auto"
    path = Path(start) if explicit else shipped_start()
    if path is None or (not explicit and recipe != "fast"):
        return ""
    net, card = load_model(path)
    mismatch = []
    if card.ratio_pq != ratio:
        mismatch.append(f"its ratio is {card.ratio}, the dataset's {ratio[0]}/{ratio[1]}")
    if net.residual != model.residual:
        mismatch.append("its global residual path differs (fast and paper recipes do not mix)")
    if mismatch:
        if explicit:
            raise ConfigError(
                f"{path}: cannot start from this model: {'; '.join(mismatch)}.",
                hint="Pick a model trained for the same ratio and recipe, or pass --start none.",
            )
        return ""
    model.load_state_dict(net.state_dict())
    return f"{card.name} (weights sha256 {card.weights_sha256[:16]})"
