"""Loading a BioImage Model Zoo package (``FILE.zip``) that scopectl exported, without unpickling anything.

A package is untrusted input.  It is read with :mod:`zipfile` and :func:`yaml.safe_load` only:

* the file and every entry have size limits (the whole package 1 GiB, ``rdf.yaml`` 1 MiB, one entry
  512 MiB, at most 1,000 entries, no entry that expands more than 1,000-fold), and every entry name must be a
  plain relative path (no ``..``, no absolute path, no drive, no backslash, no symbolic link);
* ``rdf.yaml`` must describe a ``model`` in format 0.5;
* every file the description lists with a ``sha256`` is checked against it (a package whose files were
  changed after packaging is refused), and a listed file that is missing is an error;
* the weights come from the ``model.safetensors`` attachment and the model card from ``model.json``
  (:mod:`scopectl.learn.modelio` checks them as for a model directory); the PyTorch state dict and
  TorchScript files, which are pickles, are never opened.

A package from another tool (without these attachments) is refused with a message saying so.
"""

from __future__ import annotations

import hashlib
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from scopectl.errors import ModelError
from scopectl.learn.modelio import CARD_NAME, WEIGHTS_NAME, ModelCard, card_from_bytes, model_from_blob
from scopectl.learn.network import EnhanceNet

__all__ = ["MAX_PACKAGE_BYTES", "is_bioimageio_package", "load_package"]

MAX_PACKAGE_BYTES = 1024**3
MAX_ENTRY_BYTES = 512 * 1024**2
MAX_RDF_BYTES = 1024**2
MAX_ENTRIES = 1000
MAX_RATIO = 1000
_RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")


def is_bioimageio_package(path: Path) -> bool:
    """True for a readable zip file with a ``rdf.yaml`` (or ``bioimageio.yaml``) at its root."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False
    return any(n in names for n in _RDF_NAMES)


def _check_entries(path: Path, zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise ModelError(f"{path}: package has {len(infos)} entries (at most {MAX_ENTRIES}).")
    entries: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        pure = PurePosixPath(name)
        mode = info.external_attr >> 16
        if (
            not name
            or "\\" in name
            or pure.is_absolute()
            or ".." in pure.parts
            or (len(name) > 1 and name[1] == ":")
            or stat.S_ISLNK(mode)
        ):
            raise ModelError(f"{path}: package entry {name!r} is not a plain relative path; refused.")
        if info.file_size > MAX_ENTRY_BYTES:
            raise ModelError(
                f"{path}: package entry {name!r} is implausibly large ({info.file_size:,} bytes)."
            )
        if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
            raise ModelError(
                f"{path}: package entry {name!r} expands {info.file_size // info.compress_size}-fold; refused."
            )
        if name in entries:
            raise ModelError(f"{path}: package entry {name!r} appears twice; refused.")
        entries[name] = info
    return entries


def _read(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    with zf.open(info) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ModelError(f"{path}: package entry {info.filename!r} is larger than {limit:,} bytes.")
    return data


def _listed_files(node: Any, found: dict[str, str]) -> None:
    """Collect ``{source: sha256}`` of every file description in the RDF (nested anywhere)."""
    if isinstance(node, dict):
        src, sha = node.get("source"), node.get("sha256")
        if isinstance(src, str) and isinstance(sha, str):
            found[src] = sha
        for value in node.values():
            _listed_files(value, found)
    elif isinstance(node, list):
        for value in node:
            _listed_files(value, found)


def load_package(path: Path, *, device: str = "cpu") -> tuple[EnhanceNet, ModelCard]:
    """Load the scopectl network from a BioImage Model Zoo package (see the module docstring).

    Raises
    ------
    ModelError
        If the package is too large, malformed, fails a checksum, or was not exported by scopectl.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the package ({exc.strerror}).") from None
    if size > MAX_PACKAGE_BYTES:
        raise ModelError(f"{path}: package of {size:,} bytes is larger than {MAX_PACKAGE_BYTES:,}.")
    try:
        with zipfile.ZipFile(path) as zf:
            entries = _check_entries(path, zf)
            rdf_name = next((n for n in _RDF_NAMES if n in entries), None)
            if rdf_name is None:
                raise ModelError(f"{path}: not a BioImage Model Zoo package (no rdf.yaml at its root).")
            try:
                rdf = yaml.safe_load(_read(path, zf, entries[rdf_name], MAX_RDF_BYTES).decode("utf-8"))
            except (yaml.YAMLError, UnicodeDecodeError) as exc:
                raise ModelError(f"{path}: {rdf_name} is not valid YAML ({type(exc).__name__}).") from None
            if not isinstance(rdf, dict) or rdf.get("type") != "model":
                raise ModelError(f"{path}: {rdf_name} does not describe a model.")
            if not str(rdf.get("format_version", "")).startswith("0.5."):
                raise ModelError(
                    f"{path}: model description format {rdf.get('format_version')!r} is not 0.5.",
                    hint="Re-export it with scopectl export bioimageio.",
                )
            listed: dict[str, str] = {}
            _listed_files(rdf, listed)
            blobs: dict[str, bytes] = {}
            for source, sha in sorted(listed.items()):
                if "://" in source:
                    continue  # a URL: nothing in the package to check, and nothing scopectl loads
                info = entries.get(source)
                if info is None:
                    raise ModelError(
                        f"{path}: {rdf_name} lists {source!r}, which the package does not contain."
                    )
                digest = hashlib.sha256()
                with zf.open(info) as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        digest.update(block)
                        if source in (WEIGHTS_NAME, CARD_NAME):
                            blobs[source] = blobs.get(source, b"") + block
                if digest.hexdigest() != sha.lower():
                    raise ModelError(
                        f"{path}: {source} fails its SHA-256 check from {rdf_name} (the package was modified "
                        "or damaged).",
                        hint="Get the package again from its source.",
                    )
    except zipfile.BadZipFile as exc:
        raise ModelError(f"{path}: not a readable zip file ({exc}).") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the package ({exc.strerror or exc}).") from None
    if WEIGHTS_NAME not in blobs or CARD_NAME not in blobs:
        raise ModelError(
            f"{path}: this model package was not exported by scopectl (it has no checksummed {WEIGHTS_NAME} "
            f"and {CARD_NAME} attachments); scopectl loads only safetensors weights, never pickled ones.",
            hint="Run it with bioimageio.core, or export the model with scopectl export bioimageio.",
        )
    card = card_from_bytes(blobs[CARD_NAME], source=f"{path}:{CARD_NAME}")
    model = model_from_blob(blobs[WEIGHTS_NAME], card, source=f"{path}:{WEIGHTS_NAME}")
    return model.to(device).eval(), card
