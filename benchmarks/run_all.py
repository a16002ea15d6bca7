"""Run every benchmark (``make bench``): enhancement time per megapixel and training patches per second.

Results go to ``benchmarks/results/*.json``; copy the medians into ``docs/performance.md`` with the hardware
line each JSON carries.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    runs = [
        [sys.executable, str(HERE / "bench_enhance.py"), "--repeats", "3" if quick else "5"],
        [sys.executable, str(HERE / "bench_train.py"), "--steps", "5" if quick else "20", "--compile"],
    ]
    code = 0
    for cmd in runs:
        print("$", " ".join(cmd[1:]), flush=True)
        code = max(code, subprocess.run(cmd, check=False).returncode)
    return code


if __name__ == "__main__":
    sys.exit(main())
