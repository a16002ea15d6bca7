"""Driver for the LED ring running scopectl's firmware (protocol 1, see ``protocols/led-ring-protocol.md``).

The driver is lock-step: it sends a request only after the reply to the previous one, because the
board cannot receive while it clocks a frame out to the LEDs.  Each request is retried a bounded
number of times; retries reuse the sequence number, so the board re-sends its cached reply instead of
executing a request twice.  Lines that fail their CRC, replies to earlier requests and partial lines
left by a lost byte are skipped (resynchronisation); events (``!:BOOT``, ``!:TIMEOUT``,
``!:LOWBAT``) are accepted between any two lines and recorded in :attr:`SerialLedRing.events`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

import numpy as np

from scopectl.errors import DeviceError, DeviceProtocolError, DeviceTimeoutError
from scopectl.hardware.ledring.base import DeviceInfo, LedRing, LedState
from scopectl.hardware.ledring.link import SerialLike, SerialLink
from scopectl.hardware.ledring.protocol import (
    MAX_REPLY_BYTES,
    MODEL,
    PROTOCOL_VERSION,
    ErrorCode,
    LineError,
    Message,
    encode_request,
    parse_message,
)

__all__ = ["BoardEvent", "SerialLedRing"]

log = logging.getLogger(__name__)

_SEMVER_CHARS = set("0123456789.-+abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True)
class BoardEvent:
    """An unsolicited line from the board, with the Unix time it was read."""

    at: float
    name: str
    fields: tuple[str, ...]


class _Lost(Exception):
    """Internal: an attempt got no usable reply (timeout, or the board could not read the request)."""


def _int_field(value: str, what: str, url: str, *, low: int = 0, high: int = 2**32 - 1) -> int:
    if not value.isdigit() or len(value) > 10:
        raise DeviceProtocolError(f"LED ring at {url}: {what} {value!r} is not a decimal number.")
    number = int(value)
    if not low <= number <= high:
        raise DeviceProtocolError(f"LED ring at {url}: {what} {number} is outside {low}..{high}.")
    return number


class SerialLedRing(LedRing):
    """The 12-LED NeoPixel ring on an Arduino running scopectl's firmware.

    Parameters
    ----------
    url
        A device path or pyserial URL (``/dev/ttyACM0``, ``socket://host:port``, ``spy:///dev/ttyACM0``,
        ``hwgrep://Arduino``).
    baudrate
        Serial speed; the firmware uses 115200.
    timeout_s
        How long to wait for each reply before retrying.
    retries
        Retries per request after the first attempt (and re-runs of a pattern after a board reset).
    connect_timeout_s
        How long to keep asking ``HELLO`` while the board boots (an Arduino resets when its port is
        opened and needs about 2 s before the firmware answers).
    watchdog_ms
        If given, set the board's LED watchdog (``TIMEOUT``) to this value on connect and after every
        board reset; 0 disables it.  None leaves the firmware default (10 s).
    verify
        Read the shown state back (``STATE``) after every change and compare.
    connection
        An open pyserial-like connection to use instead of opening ``url`` (the driver owns it).

    Raises
    ------
    DeviceNotFoundError
        Nothing can be opened at ``url``.
    DeviceTimeoutError
        The port opened but nothing answered within ``connect_timeout_s``.
    DeviceProtocolError
        Something answered, but not scopectl's LED-ring firmware speaking protocol 1.

    Attributes
    ----------
    history
        Every change of the shown state as ``(unix_time, LedState)``, including the board's own
        changes (``cause`` ``"boot"`` after a reset, ``"timeout"`` after its watchdog fired).
    events
        Every event line the board sent (:class:`BoardEvent`), in order.
    boot_count
        Resets seen since the connection was made (a boot while connecting is not counted).
    retry_count, noise_lines
        Requests resent, and lines skipped as unreadable or stale (diagnostics of the link).
    low_battery_mv
        The voltage of the last ``!:LOWBAT`` event, or None.

    Notes
    -----
    Public methods are thread-safe (serialised by a lock).
    """

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 115200,
        timeout_s: float = 1.0,
        retries: int = 3,
        connect_timeout_s: float = 3.0,
        watchdog_ms: int | None = None,
        verify: bool = True,
        connection: SerialLike | None = None,
    ) -> None:
        super().__init__()
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if watchdog_ms is not None and not 0 <= watchdog_ms <= 600000:
            raise ValueError(f"watchdog_ms must be within 0..600000, got {watchdog_ms}")
        self.address = url
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.connect_timeout_s = float(connect_timeout_s)
        self.watchdog_ms = watchdog_ms
        self.verify = verify
        self.events: list[BoardEvent] = []
        self.retry_count = 0
        self.noise_lines = 0
        self.boot_count = 0
        self.low_battery_mv: float | None = None
        self._seq = 0
        self._needs_setup = True
        self._connecting = False
        self._info: DeviceInfo | None = None
        self._link = SerialLink(url, baudrate=baudrate, connection=connection, max_line_bytes=MAX_REPLY_BYTES)
        try:
            self._handshake()
            self._setup()
            self._record(self._do_state())
        except BaseException:
            self._link.close()
            self._closed = True
            raise

    # ---- line handling ----------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def _handle_event(self, message: Message) -> None:
        now = time.time()
        self.events.append(BoardEvent(now, message.name, message.fields))
        if message.name == "BOOT":
            self._needs_setup = True
            if self._connecting:
                # expected: opening an Arduino's port resets it, and the board may boot while we say HELLO
                log.info("LED ring at %s started (!:BOOT %s)", self.address, " ".join(message.fields))
            else:
                self.boot_count += 1
                log.warning("LED ring at %s reset (!:BOOT %s)", self.address, " ".join(message.fields))
            self._record(self._boot_state(now))
        elif message.name == "TIMEOUT":
            log.warning("LED ring at %s: watchdog switched the LEDs off", self.address)
            self._record(self._off_state("timeout", now))
        elif message.name == "LOWBAT":
            if message.fields and message.fields[0].isdigit():
                self.low_battery_mv = float(message.fields[0])
            log.warning("LED ring at %s: battery low (%s mV)", self.address, " ".join(message.fields))

    def _boot_state(self, now: float) -> LedState:
        return LedState(np.zeros((self.num_leds, 3), np.uint8), 255, now, "boot")

    def _read_message(self, deadline: float) -> Message | None:
        """Next well-formed reply before ``deadline`` (events are handled on the way), or None."""
        while True:
            raw = self._link.read_line(deadline)
            if raw is None:
                return None
            try:
                message = parse_message(raw)
            except LineError as exc:
                self.noise_lines += 1
                log.debug("LED ring at %s: skipping noise %r (%s)", self.address, raw, exc)
                continue
            if message.kind == "event":
                self._handle_event(message)
                continue
            return message

    def _attempt(self, line: bytes, seq: int, timeout_s: float) -> Message:
        """Send ``line`` once and wait for the reply carrying ``seq``."""
        self._link.write(line)
        deadline = time.monotonic() + timeout_s
        boots = self.boot_count
        while True:
            message = self._read_message(deadline)
            if self.boot_count != boots:
                # the board restarted: whatever it was doing is lost, and its input buffer is empty
                raise _Lost("the board reset")
            if message is None:
                raise _Lost("no reply")
            if message.seq is None:
                # The board could not read a line (CRC, unreadable SEQ, too long): ours, or a stale
                # partial line.  Either way it is idle now, so resending is safe.
                raise _Lost(f"board reported {message.fields[-1] if message.fields else 'an error'}")
            if message.seq != seq:
                self.noise_lines += 1
                continue
            if not message.ok and message.error in (ErrorCode.CRC, ErrorCode.TOOLONG, ErrorCode.BUSY):
                raise _Lost(f"board reported {message.fields[-1]}")
            return message

    def _flush_partial(self) -> None:
        """After a lost reply: end any partial line the board holds, so the retry starts clean."""
        self._link.write(b"\n")
        quiet_s = min(self.timeout_s, 0.05)
        end = time.monotonic() + self.timeout_s
        deadline = time.monotonic() + quiet_s
        while self._read_message(deadline) is not None and deadline < end:
            deadline = min(end, time.monotonic() + quiet_s)

    def _request(
        self, command: str, *args: int | str, retries: int | None = None, timeout_s: float | None = None
    ) -> tuple[str, ...]:
        """Send one request with bounded retries; return the ``OK`` reply's fields.

        Raises
        ------
        DeviceTimeoutError
            No usable reply after all attempts.
        DeviceProtocolError
            The board rejected the request (``SYNTAX``, ``RANGE``, ``UNKNOWN``).
        """
        seq = self._next_seq()
        line = encode_request(seq, command, args)
        attempts = (self.retries if retries is None else retries) + 1
        wait_s = self.timeout_s if timeout_s is None else timeout_s
        reason = "no reply"
        for attempt in range(attempts):
            if attempt:
                self.retry_count += 1
            try:
                message = self._attempt(line, seq, wait_s)
            except _Lost as lost:
                reason = str(lost)
                if reason == "no reply" and attempt + 1 < attempts:
                    self._flush_partial()
                continue
            if message.ok:
                return message.fields
            name = message.fields[-1] if message.fields else "?"
            raise DeviceProtocolError(
                f"LED ring at {self.address} rejected {command} {' '.join(map(str, args))}".rstrip()
                + f" with error {message.fields[0] if message.fields else '?'} {name}.",
                hint="The firmware does not implement protocol 1 as this driver expects; reflash it (make firmware).",
            )
        raise DeviceTimeoutError(
            f"LED ring at {self.address}: no valid reply to {command} after {attempts} attempt(s) of "
            f"{wait_s:g} s ({reason}).",
            hint="Check the cable and the board's power; if it keeps happening, raise timeout_s or retries.",
        )

    # ---- connection set-up -----------------------------------------------------------------------------
    def _handshake(self) -> None:
        """Ask ``HELLO`` until the board answers or ``connect_timeout_s`` passes; check firmware and protocol."""
        self._connecting = True
        try:
            self._say_hello()
        finally:
            self._connecting = False

    def _say_hello(self) -> None:
        """The handshake loop (see :meth:`_handshake`)."""
        start = time.monotonic()
        end = start + max(self.connect_timeout_s, self.timeout_s)
        echoed = False
        while True:
            seq = self._next_seq()
            line = encode_request(seq, "HELLO")
            self._link.write(line)
            deadline = min(end, time.monotonic() + self.timeout_s)
            while True:
                raw = self._link.read_line(deadline)
                if raw is None:
                    break
                if raw.rstrip(b"\r\n") == line.rstrip(b"\n"):
                    echoed = True
                    break
                try:
                    message = parse_message(raw)
                except LineError:
                    self.noise_lines += 1
                    continue
                if message.kind == "event":
                    self._handle_event(message)
                    if message.name == "BOOT":
                        break  # the board just (re)started: ask again at once
                    continue
                if message.seq == seq and message.ok:
                    self._check_hello(message.fields)
                    return
                if message.seq == seq:
                    raise DeviceProtocolError(
                        f"{self.address} answered HELLO with an error ({' '.join(message.fields)}): it is not "
                        "running scopectl's LED-ring firmware.",
                        hint="Flash firmware/ (make firmware) or use flavour 'firmata' for StandardFirmata.",
                    )
            if echoed:
                raise DeviceProtocolError(
                    f"{self.address} echoes what is sent to it (a loop-back or a terminal), it is not an LED ring "
                    "running scopectl's firmware.",
                    hint="Point the LED ring URL at the board's serial port.",
                )
            if time.monotonic() >= end:
                break
            self._flush_partial()
        waited = time.monotonic() - start
        if self._link.bytes_received == 0:
            raise DeviceTimeoutError(
                f"LED ring at {self.address}: no answer to HELLO within {waited:.1f} s.",
                hint="Check the port, that the board is powered and flashed with scopectl's firmware "
                "(make firmware), and the baud rate (115200).",
            )
        raise DeviceProtocolError(
            f"LED ring at {self.address}: received {self._link.bytes_received} bytes in {waited:.1f} s but no "
            "valid scopectl LED-ring reply (wrong firmware or baud rate?).",
            hint="Flash scopectl's firmware (make firmware), or use flavour 'firmata' for StandardFirmata boards.",
        )

    def _check_hello(self, fields: tuple[str, ...]) -> None:
        if len(fields) != 4 or fields[0] != MODEL:
            raise DeviceProtocolError(
                f"{self.address} answered HELLO with {' '.join(fields)!r}, not {MODEL}: wrong firmware.",
                hint="Flash scopectl's LED-ring firmware (make firmware).",
            )
        firmware, protocol_text, leds_text = fields[1], fields[2], fields[3]
        if not firmware or len(firmware) > 32 or not set(firmware) <= _SEMVER_CHARS:
            raise DeviceProtocolError(f"{self.address}: implausible firmware version {firmware!r} in HELLO.")
        protocol = _int_field(protocol_text, "protocol version", self.address, high=255)
        if protocol != PROTOCOL_VERSION:
            raise DeviceProtocolError(
                f"LED ring at {self.address} speaks protocol {protocol} (firmware {firmware}); this scopectl speaks "
                f"protocol {PROTOCOL_VERSION}.",
                hint="Reflash the firmware that ships with this scopectl version (make firmware), or upgrade scopectl.",
            )
        num_leds = _int_field(leds_text, "number of LEDs", self.address, low=1, high=12)
        self.num_leds = num_leds
        self._info = DeviceInfo(
            kind="ledring/scopectl",
            model=MODEL,
            firmware=firmware,
            protocol=str(protocol),
            address=self.address,
            extra={"num_leds": num_leds},
        )

    def _setup(self) -> None:
        """Configure the board after connecting or after it reset."""
        self._needs_setup = False
        if self.watchdog_ms is not None:
            self._request("TIMEOUT", self.watchdog_ms)

    # ---- hooks -------------------------------------------------------------------------------------------
    def _do_info(self) -> DeviceInfo:
        assert self._info is not None
        uptime_ms = _int_field(self._request("PING")[0], "uptime", self.address)
        return DeviceInfo(
            self._info.kind,
            self._info.model,
            self._info.firmware,
            self._info.protocol,
            self._info.address,
            {**self._info.extra, "uptime_ms": uptime_ms, "boot_count": self.boot_count},
        )

    def _run_changes(self, what: str, stage: list[tuple[str, tuple[int, ...]]], expect: LedState) -> LedState:
        """Run ``stage`` then SHOW/OFF; redo everything if the board reset meanwhile."""
        resets = 0
        for _ in range(self.retries + 1):
            if self._needs_setup:
                self._setup()
            boots = self.boot_count
            for command, args in stage:
                self._request(command, *args)
            self._request("OFF" if what == "off" else "SHOW")
            shown_at = time.time()
            if self.boot_count != boots:
                resets += 1
                continue
            state = LedState(expect.colors, expect.brightness, shown_at, expect.cause)
            if self.verify:
                seen = self._read_state()
                if self.boot_count != boots:
                    resets += 1
                    continue
                if not seen.same_light(state):
                    raise DeviceProtocolError(
                        f"LED ring at {self.address} shows brightness {seen.brightness} and colours "
                        f"{seen.colors.tolist()} after {what}, not what was sent.",
                        hint="The firmware misbehaves; reflash it (make firmware).",
                    )
            return state
        mv = f" (battery {self.low_battery_mv:.0f} mV)" if self.low_battery_mv is not None else ""
        raise DeviceError(
            f"LED ring at {self.address} reset {resets} times while switching the LEDs ({what}){mv}: brown-out?",
            hint="Charge or replace the battery, or lower the brightness.",
        )

    def _do_set_pattern(self, colors: np.ndarray, brightness: int) -> LedState:
        stage: list[tuple[str, tuple[int, ...]]] = [("BRI", (brightness,))]
        if np.all(colors == colors[0]):
            stage.append(("ALL", tuple(int(v) for v in colors[0])))
        else:
            stage.extend(("SET", (i, *(int(v) for v in colors[i]))) for i in range(self.num_leds))
        return self._run_changes("set", stage, LedState(colors, brightness, 0.0, "set"))

    def _do_off(self) -> LedState:
        brightness = self._state.brightness if self._state is not None else 255
        expect = LedState(np.zeros((self.num_leds, 3), np.uint8), brightness, 0.0, "off")
        return self._run_changes("off", [], expect)

    def _read_state(self) -> LedState:
        fields = self._request("STATE")
        if len(fields) != 4:
            raise DeviceProtocolError(
                f"LED ring at {self.address}: STATE reply has {len(fields)} fields, not 4."
            )
        brightness = _int_field(fields[0], "brightness", self.address, high=255)
        _int_field(fields[1], "frame number", self.address)
        _int_field(fields[2], "watchdog timeout", self.address, high=600000)
        hexes = fields[3]
        if len(hexes) != 6 * self.num_leds or any(c not in "0123456789ABCDEFabcdef" for c in hexes):
            raise DeviceProtocolError(
                f"LED ring at {self.address}: STATE colours {hexes!r} are not {6 * self.num_leds} hex digits."
            )
        colors = np.frombuffer(bytes.fromhex(hexes), dtype=np.uint8).reshape(self.num_leds, 3)
        return LedState(colors, brightness, time.time(), "observed")

    def _do_state(self) -> LedState:
        seen = self._read_state()
        if self._state is not None and self._state.same_light(seen):
            return self._state
        if self._state is not None and seen.is_off and self._state.is_off:
            return self._state
        return seen

    def _do_battery_mv(self) -> float:
        return float(_int_field(self._request("BAT")[0], "battery voltage", self.address, high=20000))

    def _do_close(self) -> None:
        self._link.close()

    # ---- extra public API ----------------------------------------------------------------------------------
    def ping(self) -> int:
        """Round trip to the board (also resets its watchdog); return its uptime in ms."""
        with self._lock:
            self._check_open()
            return _int_field(self._request("PING")[0], "uptime", self.address)

    def reset(self) -> None:
        """Reboot the board (``RESET``) and wait until it answers again; the LEDs are off afterwards.

        ``RESET`` is sent once, never retried (a retry would reboot the board again); a lost reply is
        fine as long as the board announces its restart (``!:BOOT``).
        """
        with self._lock:
            self._check_open()
            boots = self.boot_count
            with contextlib.suppress(DeviceTimeoutError):
                self._request("RESET", retries=0)
            deadline = time.monotonic() + max(self.connect_timeout_s, self.timeout_s)
            while self.boot_count == boots and time.monotonic() < deadline:
                self._read_message(min(deadline, time.monotonic() + 0.05))
            if self.boot_count == boots:
                raise DeviceTimeoutError(
                    f"LED ring at {self.address} did not restart (no !:BOOT) after RESET.",
                    hint="Power-cycle the board.",
                )
            self._handshake()
            self._setup()
            self._record(self._do_state())
