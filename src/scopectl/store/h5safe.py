"""Opening HDF5 files that came from elsewhere: the one place scopectl opens them and maps h5py's errors.

An HDF5 file can point outside itself.  An *external link* names an object in another file (which HDF5
opens with the same access flags: a file opened for writing opens the target for writing too); *external
raw storage* keeps a dataset's bytes in any file (``/etc/passwd`` will do); a *virtual dataset* maps other
files' datasets; a *soft link* can loop; a dataset can declare a shape of petabytes in a few bytes; a filter
can name a dynamically loaded plugin.  scopectl writes none of these, so :func:`open_h5` refuses every file
that holds one, before any of its data is read:

* the file must be a regular file, non-empty, and readable as HDF5;
* it is always checked read-only; a writer reopens it ``r+`` only after the check (and only the same inode),
  so a damaged or foreign file is never modified;
* every link is a hard link; no dataset is virtual or has external storage; only the filters scopectl
  writes (deflate, shuffle, LZF, Fletcher-32) are allowed, and HDF5's plugin search path is emptied, so no
  shared library is ever loaded for a file;
* every dataset's and attribute's declared size is bounded (:data:`MAX_DATASET_BYTES`, :data:`MAX_ATTR_BYTES`).

Errors are mapped in one place, as h5py maps HDF5's: :func:`translate` turns an ``OSError`` that carries an
``errno`` into a :class:`~scopectl.errors.FilesystemError`, and HDF5's own failures (a corrupt chunk, a
missing object or attribute, a wrong type) into :class:`~scopectl.errors.StoreCorruptError` naming the file
and the object.  :func:`reading` is the context manager readers wrap their accesses in, and
:class:`SafeDataset` wraps a dataset that others slice lazily.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np

from scopectl.errors import ScopectlError, StoreCorruptError, StoreError, from_os_error

__all__ = [
    "MAX_ATTR_BYTES",
    "MAX_DATASET_BYTES",
    "SafeDataset",
    "check_file",
    "open_h5",
    "reading",
    "translate",
]

#: Largest dataset accepted, by declared size (a 25K × 25K RGB mosaic is 1.9 GB).
MAX_DATASET_BYTES = 8 * 1024**3
#: Largest attribute accepted (plans and rig descriptions are JSON of a few hundred kB at most).
MAX_ATTR_BYTES = 16 * 1024**2
#: Filters scopectl writes: deflate (gzip), shuffle, Fletcher-32, LZF.
ALLOWED_FILTERS = frozenset({1, 2, 3, 32000})
_FILTER_NAMES = {
    1: "deflate",
    2: "shuffle",
    3: "fletcher32",
    4: "szip",
    5: "nbit",
    6: "scaleoffset",
    32000: "lzf",
}

_REMEDY = "Restore the file from a backup, or re-acquire / re-import it."


def _no_plugins() -> None:
    """Empty HDF5's filter-plugin search path: a file must never make this process load a library."""
    with contextlib.suppress(Exception):
        while h5py.h5pl.size() > 0:
            h5py.h5pl.remove(0)


_no_plugins()


def translate(exc: BaseException, *, path: Path, what: str = "") -> ScopectlError:
    """Map an error raised by h5py (or by reading its values) to a scopectl error naming ``path``.

    ``OSError`` with an ``errno`` is the operating system's (:func:`scopectl.errors.from_os_error`); every
    other failure (HDF5's own ``OSError``\\ s without errno, ``KeyError`` for a missing object or attribute,
    ``TypeError``/``ValueError`` for a wrong type or value, invalid JSON, ``MemoryError`` from a bogus size) is
    a damaged or foreign file.
    """
    if isinstance(exc, ScopectlError):
        return exc
    if isinstance(exc, OSError) and isinstance(exc.errno, int) and exc.errno != 0:
        return from_os_error(exc, path=path, action=f"read {what}" if what else "read it")
    detail = " ".join(str(exc).split())[:160] or type(exc).__name__
    where = f" ({what})" if what else ""
    return StoreCorruptError(
        f"{path}: damaged or not written by scopectl{where}: {type(exc).__name__}: {detail}.", hint=_REMEDY
    )


#: What :func:`reading` translates: everything h5py, numpy and json raise for a bad file.
_READ_ERRORS = (
    OSError,
    KeyError,
    ValueError,
    TypeError,
    RuntimeError,
    IndexError,
    MemoryError,
    AttributeError,
)


@contextlib.contextmanager
def reading(path: Path, what: str = "") -> Iterator[None]:
    """Translate errors of the accesses in the block (see :func:`translate`)."""
    try:
        yield
    except ScopectlError:
        raise
    except _READ_ERRORS as exc:
        raise translate(exc, path=path, what=what) from None


class SafeDataset:
    """A dataset others slice lazily (``ds[r0:r1, c0:c1]``), with read errors translated.

    Parameters
    ----------
    ds
        The h5py dataset.
    path
        Its file, for messages.
    what
        What it is ("the benchtop mosaic"), for messages.
    """

    def __init__(self, ds: h5py.Dataset, *, path: Path, what: str) -> None:
        self._ds = ds
        self.path = path
        self.what = what

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self._ds.shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        dtype: np.dtype[Any] = np.dtype(self._ds.dtype)
        return dtype

    @property
    def ndim(self) -> int:
        return int(self._ds.ndim)

    @property
    def chunks(self) -> tuple[int, ...] | None:
        chunks = self._ds.chunks
        return None if chunks is None else tuple(int(v) for v in chunks)

    @property
    def attrs(self) -> Any:
        return self._ds.attrs

    def __len__(self) -> int:
        return int(self._ds.shape[0])

    def __getitem__(self, key: Any) -> Any:
        with reading(self.path, self.what):
            return self._ds[key]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        with reading(self.path, self.what):
            arr = np.asarray(self._ds[()])
        return arr if dtype is None else arr.astype(dtype)


def check_file(path: Path, *, what: str = "file") -> os.stat_result:
    """Check that ``path`` is an existing, non-empty regular file (not a FIFO, device or directory).

    Raises
    ------
    StoreError
        Missing, empty, or not a regular file.
    FilesystemError
        The file cannot be examined (permissions ...).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise StoreError(
            f"{path}: no such {what}.", hint="Check the id and --root; `scopectl store ls`."
        ) from None
    except OSError as exc:
        raise from_os_error(exc, path=path, action=f"open the {what}") from None
    if stat.S_ISDIR(st.st_mode):
        raise StoreError(f"{path}: is a directory, not an HDF5 {what}.")
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"{path}: not a regular file (a FIFO, socket or device), not an HDF5 {what}.")
    if st.st_size == 0:
        raise StoreCorruptError(f"{path}: the {what} is empty (0 bytes).", hint=_REMEDY)
    return st


def open_h5(
    path: Path | str, mode: Literal["r", "r+", "x", "w"] = "r", *, what: str = "file", check: bool = True
) -> h5py.File:
    """Open an HDF5 file safely: read-only unless writing, and refused if it points outside itself.

    Parameters
    ----------
    path
        The file.
    mode
        ``"r"`` (read-only, without HDF5's file lock so a reader never blocks a writer), ``"r+"`` (checked
        read-only first, then reopened for writing), ``"x"`` (create; fails if it exists) or ``"w"``
        (create or truncate).
    what
        What the file is ("slide file", "dataset"), for messages.
    check
        Walk the file and refuse links, external or virtual storage, unknown filters and absurd sizes
        (for ``"r"`` and ``"r+"``).

    Raises
    ------
    StoreError, StoreCorruptError
        Missing, empty, not HDF5, or holding an object scopectl refuses.
    FilesystemError
        The operating system refused (read-only file system, permissions ...).
    """
    path = Path(path)
    if mode in ("x", "w"):
        try:
            return h5py.File(path, mode)
        except FileExistsError:
            raise StoreError(f"{path}: already exists.") from None
        except OSError as exc:
            raise _open_error(exc, path, what, creating=True) from None
    st = check_file(path, what=what)
    try:
        h5 = h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise _open_error(exc, path, what, creating=False) from None
    try:
        if check:
            check_objects(h5, path)
    except BaseException:
        h5.close()
        raise
    if mode == "r":
        return h5
    h5.close()
    if path.is_symlink():
        raise StoreError(f"{path}: is a symbolic link; scopectl writes only regular files under its root.")
    try:
        h5 = h5py.File(path, "r+")
    except OSError as exc:
        raise _open_error(exc, path, what, creating=False) from None
    now = os.stat(path)
    if (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev):  # replaced between the check and the reopen
        h5.close()
        raise StoreError(f"{path}: the file was replaced while it was being opened; try again.")
    return h5


def _open_error(exc: OSError, path: Path, what: str, *, creating: bool) -> ScopectlError:
    if isinstance(exc.errno, int) and exc.errno != 0:
        return from_os_error(exc, path=path, action=f"{'create' if creating else 'open'} the {what}")
    first = " ".join(str(exc).split())[:160]
    if creating:
        return StoreError(f"{path}: cannot create the {what} ({first}).")
    return StoreCorruptError(f"{path}: not a readable HDF5 {what} ({first}).", hint=_REMEDY)


def check_objects(h5: h5py.File, path: Path) -> None:
    """Refuse links, external or virtual storage, unknown filters and absurd sizes anywhere in ``h5``.

    Raises
    ------
    StoreCorruptError
        Naming the first offending object.
    """
    problems: list[str] = []

    def bad(name: str, why: str) -> None:
        problems.append(f"/{name}: {why}")

    def visit(name: str, link: Any) -> None:
        if problems:
            return
        if isinstance(link, h5py.ExternalLink):
            bad(name, f"an external link to {link.filename}:{link.path}")
            return
        if isinstance(link, h5py.SoftLink):
            bad(name, f"a soft link to {link.path}")
            return
        if not isinstance(link, h5py.HardLink):
            bad(name, f"a link of unknown type {type(link).__name__}")
            return
        obj = h5.get(name)
        if isinstance(obj, h5py.Dataset):
            why = _dataset_problem(obj)
            if why:
                bad(name, why)
                return
        elif obj is not None and not isinstance(obj, h5py.Group):
            bad(name, f"an object of unsupported type {type(obj).__name__}")
            return
        if obj is not None:
            why = _attrs_problem(obj)
            if why:
                bad(name, why)

    with reading(path, "its object tree"):
        why = _attrs_problem(h5)
        if why:
            bad("", why)
        if not problems:
            h5.visititems_links(visit)
    if problems:
        raise StoreCorruptError(
            f"{path}: refused: {problems[0]}; scopectl files hold no links, external or virtual data, unknown "
            "filters or absurd sizes.",
            hint="The file is damaged or was crafted; restore it from a backup or re-acquire / re-import it.",
        )


def _dataset_problem(ds: h5py.Dataset) -> str:
    if ds.is_virtual:
        return "a virtual dataset (its data lives in other files)"
    dcpl = ds.id.get_create_plist()
    if dcpl.get_external_count() > 0:
        name = dcpl.get_external(0)[0]
        return f"a dataset stored in an external file ({os.fsdecode(name)})"
    for k in range(dcpl.get_nfilters()):
        code = int(dcpl.get_filter(k)[0])
        if code not in ALLOWED_FILTERS:
            return f"a dataset with filter {code} ({_FILTER_NAMES.get(code, 'a plugin')}), which scopectl never writes"
    shape = ds.shape
    if shape is None:
        return ""
    if any(int(n) < 0 for n in shape):
        return f"a dataset of impossible shape {shape}"
    nbytes = int(np.prod([int(n) for n in shape], dtype=object)) * max(1, int(ds.dtype.itemsize))
    if nbytes > MAX_DATASET_BYTES:
        return f"a dataset of shape {shape} ({nbytes:,} bytes, limit {MAX_DATASET_BYTES:,})"
    return ""


def _attrs_problem(obj: h5py.HLObject) -> str:
    for key in obj.attrs:
        aid = obj.attrs.get_id(key)
        shape = aid.shape or ()
        nbytes = int(np.prod([int(n) for n in shape], dtype=object)) * max(1, int(aid.dtype.itemsize))
        if nbytes > MAX_ATTR_BYTES:
            return f"attribute {key!r} of {nbytes:,} bytes (limit {MAX_ATTR_BYTES:,})"
    return ""


# ------------------------------------------------------------------------------------ typed attributes
def attr_str(obj: h5py.HLObject, name: str) -> str:
    """A string attribute (``KeyError`` when missing, ``TypeError`` when not a string)."""
    value = obj.attrs[name]
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
        if isinstance(value, bytes):
            return value.decode("utf-8")
    if not isinstance(value, str):
        raise TypeError(f"attribute {name!r} of {obj.name} is {type(value).__name__}, not a string")
    return value


def attr_float(obj: h5py.HLObject, name: str) -> float:
    """A scalar number attribute as a float (NaN allowed: scopectl stores 'unknown' as NaN)."""
    value = np.asarray(obj.attrs[name])
    if value.shape != () or value.dtype.kind not in "fiub":
        raise TypeError(f"attribute {name!r} of {obj.name} is not a number")
    return float(value)


def attr_int(obj: h5py.HLObject, name: str) -> int:
    """A scalar integer attribute."""
    value = np.asarray(obj.attrs[name])
    if value.shape != () or value.dtype.kind not in "iub":
        raise TypeError(f"attribute {name!r} of {obj.name} is not an integer")
    return int(value)


def attr_bool(obj: h5py.HLObject, name: str, default: bool | None = None) -> bool:
    """A scalar boolean attribute (``default`` when missing, if given)."""
    if name not in obj.attrs and default is not None:
        return default
    value = np.asarray(obj.attrs[name])
    if value.shape != () or value.dtype.kind not in "biu":
        raise TypeError(f"attribute {name!r} of {obj.name} is not a boolean")
    return bool(value)


def attr_json(obj: h5py.HLObject, name: str, kind: type = dict, default: Any = None) -> Any:
    """A JSON attribute, parsed, of type ``kind`` (``ValueError`` for invalid JSON or another type)."""
    if name not in obj.attrs and default is not None:
        return default
    value = json.loads(attr_str(obj, name))
    if not isinstance(value, kind):
        raise TypeError(
            f"attribute {name!r} of {obj.name} holds JSON {type(value).__name__}, not {kind.__name__}"
        )
    return value
