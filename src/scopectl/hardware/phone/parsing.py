"""Strict parsers for what a phone says: file names, shell exit codes, ``getprop``, ``dumpsys``, ``df``,
``sha256sum`` and ``am start`` output.

Everything a phone reports is untrusted.  Each parser accepts exactly the documented format and raises
:class:`~scopectl.errors.DeviceProtocolError` (naming the phone and the command) otherwise.
"""

from __future__ import annotations

import re
import unicodedata

from scopectl.errors import DeviceProtocolError

__all__ = [
    "MAX_NAME_BYTES",
    "parse_am_start",
    "parse_battery",
    "parse_df_free_bytes",
    "parse_exit_code",
    "parse_keyguard_showing",
    "parse_sha256sum",
    "parse_wakefulness",
    "safe_remote_name",
]

MAX_NAME_BYTES = 255


def safe_remote_name(raw: bytes | str, *, device: str) -> str:
    """Validate a file name listed by the phone, for use as a local file name.

    Rejects names that are not UTF-8, empty, ``.``/``..``, longer than 255 bytes, or that contain a
    slash, a backslash, NUL or any control or format character -- so the name can never leave the
    destination directory or spoof a terminal.

    Raises
    ------
    DeviceProtocolError
        Naming the phone and the offending name (shown with ``repr``).
    """
    try:
        name = raw if isinstance(raw, str) else bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise DeviceProtocolError(
            f"phone {device} listed a file name that is not UTF-8 ({raw[:80]!r}); refusing it."
        ) from None
    problem = None
    if not name or name in (".", ".."):
        problem = "is empty or a directory reference"
    elif len(name.encode("utf-8")) > MAX_NAME_BYTES:
        problem = f"is longer than {MAX_NAME_BYTES} bytes"
    elif "/" in name or "\\" in name:
        problem = "contains a path separator (it would escape the destination)"
    elif any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        problem = "contains control characters"
    if problem:
        raise DeviceProtocolError(
            f"phone {device} listed an unsafe file name {name[:120]!r} that {problem}; refusing it "
            "(check what wrote it to the phone's camera folder)."
        )
    return name


def parse_exit_code(output: str, *, marker: str, device: str, command: str) -> tuple[str, int]:
    """Split shell output ending in ``MARKER=<rc>`` into ``(output before it, rc)``.

    The driver appends ``; echo MARKER=$?`` (with a random marker) to each command, because legacy
    ``shell:`` streams carry no exit code.
    """
    text = output.replace("\r\n", "\n")
    match = re.search(rf"(?:^|\n){re.escape(marker)}=([0-9]{{1,3}})\n?\Z", text)
    if match is None:
        raise DeviceProtocolError(
            f"phone {device}: no exit status after {command!r} (output {text[-120:]!r}); "
            "the shell was cut off or is not a POSIX shell."
        )
    rc = int(match.group(1))
    if rc > 255:
        raise DeviceProtocolError(f"phone {device}: impossible exit status {rc} after {command!r}.")
    return text[: match.start()] + ("\n" if match.group(0).startswith("\n") else ""), rc


def _bad(device: str, command: str, text: str, why: str) -> DeviceProtocolError:
    return DeviceProtocolError(
        f"phone {device}: unexpected '{command}' output ({why}): {text.strip()[:160]!r}."
    )


def parse_battery(text: str, *, device: str) -> tuple[float, int | None]:
    """``(battery percent, voltage in mV or None)`` from ``dumpsys battery``."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        m = re.fullmatch(r"\s+([A-Za-z][A-Za-z ]*):\s*(.*?)\s*", line)
        if m:
            fields.setdefault(m.group(1), m.group(2))
    try:
        level = int(fields["level"])
        scale = int(fields.get("scale", "100"))
    except (KeyError, ValueError):
        raise _bad(device, "dumpsys battery", text, "no integer 'level'") from None
    if scale <= 0 or not 0 <= level <= scale:
        raise _bad(device, "dumpsys battery", text, f"level {level} outside 0..{scale}")
    voltage: int | None = None
    raw_v = fields.get("voltage")
    if raw_v is not None and re.fullmatch(r"[0-9]{1,5}", raw_v):
        value = int(raw_v)
        voltage = value if 2000 <= value <= 6000 else None  # some phones report volts or µV: drop those
    return 100.0 * level / scale, voltage


def parse_df_free_bytes(text: str, *, device: str) -> int:
    """Free bytes from ``df -k PATH`` (toybox format, one file system)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 2:
        raise _bad(device, "df -k", text, f"{len(lines)} lines, expected 2")
    header, row = lines[0].split(), lines[1].split()
    if not header or header[0] != "Filesystem" or "1K-blocks" not in header or "Available" not in header:
        raise _bad(device, "df -k", text, "header without 'Filesystem', '1K-blocks' and 'Available'")
    if len(row) < 6:
        raise _bad(device, "df -k", text, "short row")
    # the row has the header's columns, except that "Mounted on" is one column in two words
    column = header.index("Available")
    value = row[column]
    if not re.fullmatch(r"[0-9]{1,15}", value):
        raise _bad(device, "df -k", text, f"'Available' is {value!r}")
    return int(value) * 1024


def parse_sha256sum(text: str, *, path: str, device: str) -> str:
    """The hex digest from ``sha256sum PATH`` (one line, ``<64 hex>  <path>``)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise _bad(device, "sha256sum", text, f"{len(lines)} lines, expected 1")
    m = re.fullmatch(r"([0-9a-fA-F]{64})[ \t]+\*?(.+)", lines[0].rstrip())
    if m is None or m.group(2) != path:
        raise _bad(device, "sha256sum", text, "not '<64 hex digits>  <path>'")
    return m.group(1).lower()


def parse_wakefulness(text: str) -> bool | None:
    """True/False when ``dumpsys power`` says the screen is awake/asleep; None when it does not say."""
    m = re.search(r"^\s*mWakefulness=(\w+)\s*$", text, re.MULTILINE)
    if m is None:
        return None
    return m.group(1) == "Awake"


def parse_keyguard_showing(text: str) -> bool | None:
    """True/False when ``dumpsys window policy`` says the lock screen is showing; None when it does not say."""
    keys = ("mDreamingLockscreen", "isStatusBarKeyguard", "mShowingLockscreen", "mKeyguardShowing")
    seen: list[bool] = []
    for key in keys:
        seen.extend(v == "true" for v in re.findall(rf"\b{key}=(true|false)\b", text))
    if not seen:
        return None
    return any(seen)


def parse_am_start(text: str, *, device: str, action: str) -> None:
    """Raise unless ``am start -W -a ACTION`` reports success."""
    for line in text.splitlines():
        stripped = line.strip()
        if (
            stripped.startswith(("Error", "Exception", "java.lang."))
            or "unable to resolve Intent" in stripped
        ):
            raise DeviceProtocolError(
                f"phone {device}: could not open the camera app with {action} ({stripped[:160]}); "
                "install a camera app that handles this intent or set camera_action in the phone profile."
            )
    status = re.search(r"^Status: (\w+)", text, re.MULTILINE)
    if status is not None and status.group(1) != "ok":
        raise _bad(device, "am start", text, f"status {status.group(1)}")
