"""A pure-Python model of the LED-ring firmware: bytes in, bytes out, on a millisecond clock.

:class:`BoardCore` implements ``protocols/led-ring-protocol.md`` (validation order, duplicate cache,
silence watchdog, low-battery alarm, RESET) exactly as the firmware does; the shared test vectors
(``protocols/led-ring-vectors.json``) are run against it, against the simulator built on it and
against the firmware in the loop, so the three cannot drift apart.  It has no threads and no I/O:
:class:`scopectl.hardware.ledring.sim.led_board.SimulatedLedBoard` serves it on a pseudo-terminal.

:class:`BatteryModel` is the simulated battery: open-circuit voltage falling with the charge drawn
(time can be accelerated) minus internal resistance times the current the LEDs draw.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scopectl.hardware.ledring.protocol import (
    MAX_LINE_BYTES,
    MODEL,
    NUM_LEDS,
    PROTOCOL_VERSION,
    ErrorCode,
    crc8,
    encode_error,
    encode_event,
    encode_reply,
)

__all__ = ["FIRMWARE_VERSION", "BatteryModel", "BoardCore", "adc_from_mv", "mv_from_adc_sum"]

FIRMWARE_VERSION = "1.0.0"
"""The firmware version the model reports (the firmware in ``firmware/scopectl_ledring``)."""

VREF_MV = 5000
DIVIDER_NUM = 2
DIVIDER_DEN = 1
LOWBAT_BELOW_MV = 3300
LOWBAT_REARM_MV = 3400
BATTERY_CHECK_PERIOD_MS = 1000
DEFAULT_TIMEOUT_MS = 10000
MAX_TIMEOUT_MS = 600000
_U32 = 0xFFFFFFFF

# command -> ranges of its arguments (inclusive upper bounds)
_COMMANDS: dict[bytes, tuple[int, ...]] = {
    b"HELLO": (),
    b"PING": (),
    b"SET": (NUM_LEDS - 1, 255, 255, 255),
    b"ALL": (255, 255, 255),
    b"BRI": (255,),
    b"SHOW": (),
    b"OFF": (),
    b"BAT": (),
    b"STATE": (),
    b"TIMEOUT": (MAX_TIMEOUT_MS,),
    b"RESET": (),
}


def mv_from_adc_sum(adc_sum: int, *, reads: int = 16) -> int:
    """Battery millivolts from the sum of ``reads`` 10-bit ADC readings (firmware formula, floored)."""
    return (adc_sum * VREF_MV * DIVIDER_NUM) // (reads * 1023 * DIVIDER_DEN)


def adc_from_mv(mv: float) -> int:
    """The 10-bit ADC reading of a battery at ``mv`` millivolts through the default divider."""
    value = round(mv * DIVIDER_DEN * 1023 / (VREF_MV * DIVIDER_NUM))
    return int(min(1023, max(0, value)))


def _is_upper_hex(data: bytes) -> bool:
    return all(0x30 <= b <= 0x39 or 0x41 <= b <= 0x46 for b in data)


@dataclass
class BatteryModel:
    """A single Li-ion cell feeding the ring: voltage sags under LED load and falls as charge is drawn.

    Parameters
    ----------
    capacity_mah
        Usable capacity.
    charge
        State of charge 0..1.
    internal_resistance_ohm
        Series resistance of cell, wiring and regulator (the load sag is ``R * I``).
    quiescent_ma
        Current drawn by the microcontroller with the LEDs dark.
    ma_per_channel
        Current of one LED channel at full value (a full-white LED draws 3x this, about 60 mA).
    time_scale
        Multiplier on elapsed time for the discharge (e.g. 3600 makes one second drain one hour).
    """

    capacity_mah: float = 2000.0
    charge: float = 0.9
    internal_resistance_ohm: float = 0.3
    quiescent_ma: float = 20.0
    ma_per_channel: float = 20.0
    time_scale: float = 1.0

    # piecewise-linear open-circuit voltage of a Li-ion cell against state of charge
    _SOC = (0.0, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0)
    _OCV_MV = (3000.0, 3300.0, 3450.0, 3600.0, 3720.0, 3820.0, 3970.0, 4070.0, 4200.0)

    def open_circuit_mv(self) -> float:
        """Open-circuit voltage at the present state of charge."""
        return float(np.interp(min(1.0, max(0.0, self.charge)), self._SOC, self._OCV_MV))

    def load_ma(self, wire_rgb: np.ndarray) -> float:
        """Current drawn with ``wire_rgb`` (``(N, 3)`` channel values after brightness) on the LEDs."""
        return self.quiescent_ma + self.ma_per_channel * float(np.sum(wire_rgb, dtype=np.int64)) / 255.0

    def voltage_mv(self, load_ma: float) -> float:
        """Terminal voltage under ``load_ma``."""
        return max(0.0, self.open_circuit_mv() - self.internal_resistance_ohm * load_ma)

    def charge_for_mv(self, mv: float, *, load_ma: float) -> float:
        """The state of charge at which the voltage under ``load_ma`` is ``mv`` (clipped to 0..1)."""
        ocv = mv + self.internal_resistance_ohm * load_ma
        return float(np.interp(ocv, self._OCV_MV, self._SOC))

    def drain(self, load_ma: float, elapsed_s: float) -> None:
        """Remove the charge drawn by ``load_ma`` during ``elapsed_s`` (scaled by :attr:`time_scale`)."""
        if elapsed_s <= 0 or self.capacity_mah <= 0:
            return
        used_mah = load_ma * elapsed_s * self.time_scale / 3600.0
        self.charge = max(0.0, self.charge - used_mah / self.capacity_mah)


class BoardCore:
    """The firmware's behaviour as a state machine (see ``protocols/led-ring-protocol.md``).

    Parameters
    ----------
    read_adc
        Returns one 10-bit reading of the battery pin (called 16 times per measurement).
    firmware
        Version reported by ``HELLO`` and ``!:BOOT``.

    Notes
    -----
    Time is given by the caller in integer milliseconds of a monotonic clock (:meth:`advance` steps
    it 1 ms at a time, like the firmware's timer interrupt).  Not thread-safe: the simulator holds a
    lock around every call.  Attributes are the board's RAM: ``staged``/``shown`` ``(12, 3)`` uint8
    colours, ``staged_brightness``/``brightness`` (of the shown frame), ``frame_no``, ``timeout_ms``.
    """

    def __init__(
        self, *, read_adc: Callable[[], int] = lambda: 419, firmware: str = FIRMWARE_VERSION
    ) -> None:
        self.read_adc = read_adc
        self.firmware = firmware
        self.boot_count = 0
        self.frames_out = 0
        self.on_frame: Callable[[np.ndarray], None] | None = None
        self.staged = np.zeros((NUM_LEDS, 3), np.uint8)
        self.shown = np.zeros((NUM_LEDS, 3), np.uint8)
        self.staged_brightness = 255
        self.brightness = 255
        self.frame_no = 0
        self.timeout_ms = DEFAULT_TIMEOUT_MS
        self.now_ms = 0
        self._boot_ms = 0
        self._rx = bytearray()
        self._rx_overflow = False
        self._rx_overrun = False
        self._last_line: bytes | None = None
        self._last_reply: bytes | None = None
        self._armed = False
        self._last_request_ms = 0
        self._lowbat_armed = True
        self._next_check_uptime_ms = BATTERY_CHECK_PERIOD_MS

    # ---- lifecycle ---------------------------------------------------------------------------------
    def boot(self, now_ms: int) -> bytes:
        """Power-up or reset: every RAM value to its default; return the ``!:BOOT`` line."""
        self.now_ms = now_ms
        self._boot_ms = now_ms
        self.boot_count += 1
        self.staged[:] = 0
        self.shown[:] = 0
        self.staged_brightness = 255
        self.brightness = 255
        self.frame_no = 0
        self.timeout_ms = DEFAULT_TIMEOUT_MS
        self._rx.clear()
        self._rx_overflow = False
        self._rx_overrun = False
        self._last_line = None
        self._last_reply = None
        self._armed = False
        self._lowbat_armed = True
        self._next_check_uptime_ms = BATTERY_CHECK_PERIOD_MS
        self._output_frame()  # the dark frame at boot (not counted in frame_no)
        return encode_event("BOOT", (self.firmware, PROTOCOL_VERSION))

    @property
    def uptime_ms(self) -> int:
        return (self.now_ms - self._boot_ms) & _U32

    def wire_rgb(self) -> np.ndarray:
        """The channel values last sent to the LEDs (RGB order, after brightness), ``(12, 3)`` uint8."""
        scaled = (self.shown.astype(np.uint32) * (self.brightness + 1)) >> 8
        return scaled.astype(np.uint8)

    def wire_bytes(self) -> bytes:
        """The last frame as sent on the data pin: G, R, B per LED, LED 0 first."""
        return self.wire_rgb()[:, [1, 0, 2]].tobytes()

    def _output_frame(self) -> None:
        self.frames_out += 1
        if self.on_frame is not None:
            self.on_frame(self.wire_rgb())

    # ---- time --------------------------------------------------------------------------------------
    def advance(self, now_ms: int) -> bytes:
        """Let time pass up to ``now_ms`` (1 ms steps); return events (``!:TIMEOUT``, ``!:LOWBAT``)."""
        out = bytearray()
        while self.now_ms < now_ms:
            self.now_ms += 1
            out += self._tick()
        return bytes(out)

    def _tick(self) -> bytes:
        out = bytearray()
        if self._armed and self.timeout_ms > 0 and self.now_ms - self._last_request_ms > self.timeout_ms:
            self._armed = False
            self._off()
            out += encode_event("TIMEOUT")
        if self.uptime_ms >= self._next_check_uptime_ms:
            self._next_check_uptime_ms += BATTERY_CHECK_PERIOD_MS
            mv = self.measure_battery_mv()
            if mv < LOWBAT_BELOW_MV and self._lowbat_armed:
                self._lowbat_armed = False
                out += encode_event("LOWBAT", (mv,))
            elif mv >= LOWBAT_REARM_MV:
                self._lowbat_armed = True
        return bytes(out)

    def measure_battery_mv(self) -> int:
        """Battery millivolts as the firmware measures them (16 ADC reads, floored)."""
        total = 0
        for _ in range(16):
            total += int(min(1023, max(0, self.read_adc())))
        return mv_from_adc_sum(total)

    # ---- receive -----------------------------------------------------------------------------------
    def note_overrun(self) -> None:
        """Bytes were lost while the current line arrived (UART overrun): it will be answered BUSY."""
        self._rx_overrun = True

    def receive(self, data: bytes) -> bytes:
        """Feed received bytes at the current time; return everything the board writes in response.

        A ``RESET`` reboots the board at once; its ``!:BOOT`` line is part of the returned bytes.
        """
        out = bytearray()
        for byte in data:
            if byte == 0x0A:
                line = bytes(self._rx)
                overflow, overrun = self._rx_overflow, self._rx_overrun
                self._rx.clear()
                self._rx_overflow = self._rx_overrun = False
                out += self._line(line, overflow=overflow, overrun=overrun)
            elif self._rx_overflow:
                continue
            elif len(self._rx) >= MAX_LINE_BYTES - 1:
                self._rx_overflow = True
                self._rx.clear()
            else:
                self._rx.append(byte)
        return bytes(out)

    def _line(self, line: bytes, *, overflow: bool, overrun: bool) -> bytes:
        if overrun:
            return encode_error(None, ErrorCode.BUSY)
        if overflow:
            return encode_error(None, ErrorCode.TOOLONG)
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            return b""
        if (
            len(line) < 3
            or line[-3] != 0x2A
            or not _is_upper_hex(line[-2:])
            or int(line[-2:], 16) != crc8(line[:-3])
        ):
            return encode_error(None, ErrorCode.CRC)
        body = line[:-3]
        if len(body) < 3 or not _is_upper_hex(body[:2]) or body[2] != 0x3A:
            return encode_error(None, ErrorCode.SYNTAX)
        self._armed = True
        self._last_request_ms = self.now_ms
        if line == self._last_line and self._last_reply is not None:
            return self._last_reply
        seq = int(body[:2], 16)
        reply, reboot = self._execute(seq, body[3:])
        self._last_line, self._last_reply = line, reply
        if reboot:
            return reply + self.boot(self.now_ms)
        return reply

    def _execute(self, seq: int, text: bytes) -> tuple[bytes, bool]:
        tokens = text.split(b" ")
        command = tokens[0]
        if (
            not command
            or not all(0x41 <= b <= 0x5A for b in command)
            or any(not t or not t.isdigit() for t in tokens[1:])
        ):
            return encode_error(seq, ErrorCode.SYNTAX), False
        limits = _COMMANDS.get(command)
        if limits is None:
            return encode_error(seq, ErrorCode.UNKNOWN), False
        if len(tokens) - 1 != len(limits):
            return encode_error(seq, ErrorCode.SYNTAX), False
        args = [int(t) for t in tokens[1:]]
        if any(a > limit for a, limit in zip(args, limits, strict=True)):
            return encode_error(seq, ErrorCode.RANGE), False
        return self._run(seq, command, args)

    def _off(self) -> None:
        self.staged[:] = 0
        self._show()

    def _show(self) -> None:
        self.shown[:] = self.staged
        self.brightness = self.staged_brightness
        self.frame_no = (self.frame_no + 1) & _U32
        self._output_frame()

    def _run(self, seq: int, command: bytes, args: list[int]) -> tuple[bytes, bool]:
        if command == b"HELLO":
            return encode_reply(seq, (MODEL, self.firmware, PROTOCOL_VERSION, NUM_LEDS)), False
        if command == b"PING":
            return encode_reply(seq, (self.uptime_ms,)), False
        if command == b"SET":
            self.staged[args[0]] = args[1:]
            return encode_reply(seq), False
        if command == b"ALL":
            self.staged[:] = args
            return encode_reply(seq), False
        if command == b"BRI":
            self.staged_brightness = args[0]
            return encode_reply(seq), False
        if command == b"SHOW":
            self._show()
            return encode_reply(seq, (self.frame_no,)), False
        if command == b"OFF":
            self._off()
            return encode_reply(seq, (self.frame_no,)), False
        if command == b"BAT":
            return encode_reply(seq, (self.measure_battery_mv(),)), False
        if command == b"STATE":
            rgb72 = self.shown.tobytes().hex().upper()
            return encode_reply(seq, (self.brightness, self.frame_no, self.timeout_ms, rgb72)), False
        if command == b"TIMEOUT":
            self.timeout_ms = args[0]
            return encode_reply(seq), False
        if command == b"RESET":
            return encode_reply(seq), True
        raise AssertionError(f"unhandled command {command!r}")  # pragma: no cover - _COMMANDS is exhaustive
