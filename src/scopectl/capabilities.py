"""Optional capabilities of this machine, each found by using it.

A capability is present when a tiny job that needs it succeeds: compile and link a three-line program with
the same flags the firmware build uses, have simavr's library start an ATmega328P, have ``openscad`` render a
cube, have ``adb`` print its version.  A program on ``PATH`` that cannot do the job (a compiler without its
runtime archives, say) counts as missing.

``scopectl doctor`` prints every probe; the test suite's ``external(name)`` marker calls the same probes (see
``tests/conftest.py``), so a test skips, or fails under ``SCOPECTL_REQUIRE_EXTERNAL=1``, for exactly the
reason ``doctor`` shows.

Each probe has a total deadline (:data:`PROBE_TIMEOUT_S` per step) and works in a temporary folder it removes.
"""

from __future__ import annotations

import functools
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scopectl.pgcluster import PostgresUnavailable, ThrowawayPostgres

__all__ = ["CAPABILITIES", "Capability", "ProbeResult", "probe", "probe_all"]

#: Seconds one step of a probe (a compile, a run) may take.
PROBE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ProbeResult:
    """What a probe found: ``ok``, and a one-line ``detail`` (a version when present, the failure when not)."""

    name: str
    ok: bool
    detail: str
    remedy: str

    def reason(self) -> str:
        """One line for a skipped or failed test: what is missing and how to get it."""
        return f"capability {self.name!r} is missing: {self.detail}; {self.remedy}"


@dataclass(frozen=True)
class Capability:
    """An optional capability: what it is used for, how to probe it, and how to get it."""

    name: str
    used_for: str
    remedy: str
    run: Callable[[Path], str]  # returns a one-line detail; raises _Missing when the capability is absent


class _Missing(Exception):
    """A probe step failed; the message says which and why."""


def _run(argv: Sequence[str], cwd: Path, *, what: str) -> str:
    """Run one probe step; return its stdout + stderr, or raise :class:`_Missing` naming the step."""
    try:
        proc = subprocess.run(
            list(argv), cwd=cwd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        raise _Missing(f"{argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise _Missing(f"{what} took longer than {PROBE_TIMEOUT_S:.0f} s") from None
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        last = next(
            (ln for ln in reversed(output.splitlines()) if ln.strip()), f"exit code {proc.returncode}"
        )
        # the linker names the first missing archive; that line says more than clang's summary
        first = next((ln for ln in output.splitlines() if "cannot find" in ln or "fatal error" in ln), last)
        raise _Missing(f"{what} failed: {first.strip()[:200]}")
    return output


def _first_line(text: str) -> str:
    return text.splitlines()[0].strip() if text else ""


# ----------------------------------------------------------------------------------------------- probes


def _probe_adb(tmp: Path) -> str:
    out = _run(["adb", "version"], tmp, what="adb version")
    if "Android Debug Bridge" not in out:
        raise _Missing(f"adb version printed {_first_line(out)!r}, not the official client's banner")
    return _first_line(out)


def _probe_avr(tmp: Path) -> str:
    # the firmware is C++ built with avr-g++, then turned into a hex file and sized
    (tmp / "t.cpp").write_text("#include <avr/io.h>\nint main() { DDRB = 1; for (;;) {} }\n")
    _run(["avr-g++", "-mmcu=atmega328p", "-Os", "t.cpp", "-o", "t.elf"], tmp, what="avr-g++ compile and link")
    _run(["avr-objcopy", "-O", "ihex", "t.elf", "t.hex"], tmp, what="avr-objcopy")
    _run(["avr-size", "t.elf"], tmp, what="avr-size")
    return _first_line(_run(["avr-gcc", "--version"], tmp, what="avr-gcc --version"))


_SIMAVR_PROGRAM = """\
#include <stdio.h>
#include <sim_avr.h>
int main(void) {
    avr_t *avr = avr_make_mcu_by_name("atmega328p");
    if (!avr) return 1;
    avr_init(avr);
    for (int i = 0; i < 1000; i++) avr_run(avr);
    printf("simavr %s ok\\n", avr->mmcu);
    return 0;
}
"""


def _probe_simavr(tmp: Path) -> str:
    # the firmware-in-the-loop harness links libsimavr the way firmware/Makefile does, then runs an MCU
    (tmp / "t.c").write_text(_SIMAVR_PROGRAM)
    _run(
        [
            "cc",
            "-std=gnu11",
            "-I/usr/include/simavr",
            "t.c",
            "-o",
            "t",
            "-lsimavr",
            "-lelf",
            "-lutil",
            "-lpthread",
        ],
        tmp,
        what="cc against libsimavr",
    )
    return _first_line(_run(["./t"], tmp, what="an ATmega328P on libsimavr"))


def _probe_openscad(tmp: Path) -> str:
    (tmp / "cube.scad").write_text("cube(1);\n")
    _run(["openscad", "-o", "cube.stl", "cube.scad"], tmp, what="openscad rendering a cube")
    stl = (tmp / "cube.stl").read_text(errors="replace") if (tmp / "cube.stl").exists() else ""
    if "facet" not in stl:
        raise _Missing("openscad wrote no facets for a cube")
    _run(["make", "--version"], tmp, what="make --version")  # hardware_cad/ renders through its Makefile
    return _first_line(_run(["openscad", "--version"], tmp, what="openscad --version"))


def _probe_host_cxx(tmp: Path) -> str:
    # firmware host tests: g++ with ASan + UBSan, driven by make
    (tmp / "t.cpp").write_text("#include <vector>\nint main() { std::vector<int> v(3); return v[1]; }\n")
    _run(
        ["g++", "-std=c++17", "-fsanitize=address,undefined", "t.cpp", "-o", "t"], tmp, what="g++ -fsanitize"
    )
    _run(["./t"], tmp, what="a sanitized host program")
    _run(["make", "--version"], tmp, what="make --version")
    return _first_line(_run(["g++", "--version"], tmp, what="g++ --version"))


def _probe_libfuzzer(tmp: Path) -> str:
    (tmp / "f.cpp").write_text(
        "#include <cstdint>\n#include <cstddef>\n"
        'extern "C" int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return n && d[0] == 1 ? 0 : 0; }\n'
    )
    flags = ["-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all"]
    _run(
        ["clang++-14", "-std=c++17", "-O1", *flags, "f.cpp", "-o", "f"],
        tmp,
        what="clang++-14 -fsanitize=fuzzer",
    )
    out = _run(["./f", "-runs=100", "-seed=1"], tmp, what="a 100-run libFuzzer job")
    if "Done 100 runs" not in out:
        raise _Missing("the libFuzzer job did not report 'Done 100 runs'")
    return _first_line(_run(["clang++-14", "--version"], tmp, what="clang++-14 --version"))


def _probe_cuda(tmp: Path) -> str:
    del tmp
    import torch  # heavy; only this probe and the next need it

    if not torch.cuda.is_available():
        raise _Missing(
            f"PyTorch {torch.__version__} sees no CUDA GPU (CUDA build: {torch.version.cuda or 'no'})"
        )
    x = torch.ones(64, 64, device="cuda")
    value = float((x @ x).sum().item())
    if value != 64.0**3:
        raise _Missing(f"a 64x64 matmul on the GPU gave {value}, not {64.0**3}")
    return f"{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}, torch {torch.__version__}"


def _probe_bf16(tmp: Path) -> str:
    del tmp
    import torch  # torch loads only when this runs

    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()  # type: ignore[no-untyped-call]
    if not native:
        raise _Missing("this CPU has no native bfloat16 (AVX512-BF16 or AMX) that oneDNN uses")
    conv = torch.nn.Conv2d(3, 8, 3)
    x = torch.rand(1, 3, 16, 16).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    if y.dtype != torch.bfloat16 or not bool(torch.isfinite(y).all()):
        raise _Missing("a bf16 convolution did not give finite bfloat16 output")
    return f"native bfloat16 convolutions (torch {torch.__version__})"


def _probe_postgresql(tmp: Path) -> str:
    del tmp

    try:
        with ThrowawayPostgres(prefix="scopectl-probe-pg-") as pg:
            version = pg.query("SHOW server_version")
            if pg.query("SELECT 6 * 7") != "42":
                raise _Missing("a throwaway PostgreSQL server did not answer SELECT 6 * 7 with 42")
    except PostgresUnavailable as exc:
        raise _Missing(str(exc)) from None
    return f"PostgreSQL {version.strip()} (a throwaway server started, answered and stopped)"


#: The flags the browser tests start Chromium with (without the networking ones its connections are refused
#: on a closed network).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def _probe_chromium(tmp: Path) -> str:
    page = "data:text/html,<title>t</title><p id=x>scopectl-probe</p>"
    out = _run(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", "--dump-dom", page],
        tmp,
        what="headless chromium rendering a page",
    )
    if "scopectl-probe" not in out:
        raise _Missing("headless chromium did not render a test page")
    driver = _first_line(_run(["chromedriver", "--version"], tmp, what="chromedriver --version"))
    browser = _first_line(_run(["chromium", "--version"], tmp, what="chromium --version"))
    return f"{browser}; {driver}"


_APT = "install with: sudo apt-get install"

#: Every optional capability, in the order ``scopectl doctor`` prints them.
CAPABILITIES: dict[str, Capability] = {
    c.name: c
    for c in (
        Capability(
            "adb", "the official adb client against a phone or the simulated adbd", f"{_APT} adb", _probe_adb
        ),
        Capability(
            "avr-toolchain",
            "building the LED-ring firmware (make -C firmware)",
            f"{_APT} gcc-avr avr-libc binutils-avr",
            _probe_avr,
        ),
        Capability(
            "simavr",
            "running the firmware on an emulated ATmega328P (firmware in the loop)",
            f"{_APT} simavr libsimavr-dev libelf-dev",
            _probe_simavr,
        ),
        Capability(
            "openscad",
            "rendering the printable attachment (make -C hardware_cad)",
            f"{_APT} openscad make",
            _probe_openscad,
        ),
        Capability(
            "host-cxx",
            "the firmware's protocol core tested on this machine (make -C firmware host-test)",
            f"{_APT} g++ make",
            _probe_host_cxx,
        ),
        Capability(
            "libfuzzer",
            "fuzzing the firmware's protocol core (make -C firmware fuzz)",
            f"{_APT} clang-14 libclang-rt-14-dev",
            _probe_libfuzzer,
        ),
        Capability(
            "postgresql",
            "scopectl serve and workers on PostgreSQL (--db postgresql://...), tested on a throwaway server",
            f"{_APT} postgresql",
            _probe_postgresql,
        ),
        Capability(
            "chromium",
            "the viewer's tests in a real browser (headless Chromium driven by Selenium)",
            f"{_APT} chromium chromium-driver",
            _probe_chromium,
        ),
        Capability(
            "cuda",
            "training and enhancing on an NVIDIA GPU",
            "install a CUDA build of PyTorch, e.g. make install TORCH_SPEC='torch --index-url "
            "https://download.pytorch.org/whl/cu128', on a machine with an NVIDIA driver",
            _probe_cuda,
        ),
        Capability(
            "bf16",
            "bfloat16 enhancement on this CPU (about twice as fast)",
            "needs a CPU with AVX512-BF16 or AMX (nothing to install; fp32 is used otherwise)",
            _probe_bf16,
        ),
    )
}


@functools.cache
def probe(name: str) -> ProbeResult:
    """Probe one capability (cached for the life of the process).

    Raises
    ------
    KeyError
        If ``name`` is not a capability in :data:`CAPABILITIES`.
    """
    cap = CAPABILITIES[name]
    with tempfile.TemporaryDirectory(prefix=f"scopectl-probe-{name}-") as tmp:
        try:
            detail = cap.run(Path(tmp))
        except _Missing as exc:
            return ProbeResult(name, False, str(exc), cap.remedy)
    return ProbeResult(name, True, detail or "works", cap.remedy)


def probe_all() -> list[ProbeResult]:
    """Every capability's probe, in :data:`CAPABILITIES` order."""
    return [probe(name) for name in CAPABILITIES]
