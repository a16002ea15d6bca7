"""A strict subset of the Android shell (mksh + toybox) for the simulated phone.

Supported: command lists separated by ``;``, ``&&`` and ``||``, single and double quotes, ``$?``, and the
commands ``echo``, ``true``, ``false``, ``getprop``, ``dumpsys battery|power|window``, ``df``, ``ls``,
``stat -c``, ``sha256sum``, ``am start``, ``input keyevent``, ``rm``, ``wm dismiss-keyguard`` -- with the
output formats and exit codes of the real tools.  Anything else answers ``/system/bin/sh: NAME: not found``
with exit code 127; pipes, redirections and substitutions are a syntax error (exit code 1), so a driver that
relies on them fails here as it would fail on some phones.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Callable

from scopectl.hardware.phone.sim.phone import KEYCODES, STILL_IMAGE_CAMERA, SimFile, SimPhoneState

__all__ = ["ToyboxShell"]

_SH = "/system/bin/sh"


class ToyboxShell:
    """Runs shell command lines against a :class:`SimPhoneState`."""

    def __init__(self, phone: SimPhoneState) -> None:
        self.phone = phone
        self._commands: dict[str, Callable[[list[str]], tuple[str, int]]] = {
            "echo": self._echo,
            "true": lambda args: ("", 0),
            "false": lambda args: ("", 1),
            "getprop": self._getprop,
            "dumpsys": self._dumpsys,
            "df": self._df,
            "ls": self._ls,
            "stat": self._stat,
            "sha256sum": self._sha256sum,
            "am": self._am,
            "input": self._input,
            "rm": self._rm,
            "wm": self._wm,
        }

    def remove_command(self, name: str) -> None:
        """Simulate a phone whose shell lacks ``name`` (e.g. ``sha256sum`` before Android 6)."""
        self._commands.pop(name, None)

    # ------------------------------------------------------------------ parsing
    def run(self, line: str) -> tuple[bytes, int]:
        """Run a command line; returns ``(output, exit code)`` (stdout and stderr merged, as adb shows)."""
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>()")
        lexer.whitespace_split = True
        lexer.commenters = ""
        try:
            tokens = list(lexer)
        except ValueError as exc:
            return f"{_SH}: syntax error: {exc}\n".encode(), 1
        out: list[str] = []
        rc = 0
        command: list[str] = []
        pending_op = ";"
        for token in [*tokens, ";"]:
            if token in (";", "&&", "||"):
                if command:
                    should_run = (
                        pending_op == ";"
                        or (pending_op == "&&" and rc == 0)
                        or (pending_op == "||" and rc != 0)
                    )
                    if should_run:
                        text, rc = self._run_one([t.replace("$?", str(rc)) for t in command])
                        out.append(text)
                elif token != ";":
                    return f"{_SH}: syntax error: '{token}' unexpected\n".encode(), 1
                command = []
                pending_op = token
            elif token and set(token) <= set(";&|<>()"):
                return f"{_SH}: syntax error: '{token}' unsupported here\n".encode(), 1
            elif "`" in token or "$(" in token:
                return f"{_SH}: syntax error: substitutions unsupported here\n".encode(), 1
            else:
                command.append(token)
        return "".join(out).encode("utf-8", "surrogateescape"), rc

    def _run_one(self, argv: list[str]) -> tuple[str, int]:
        handler = self._commands.get(argv[0])
        if handler is None:
            return f"{_SH}: {argv[0]}: not found\n", 127
        return handler(argv[1:])

    # ------------------------------------------------------------------ commands
    def _echo(self, args: list[str]) -> tuple[str, int]:
        newline = True
        if args and args[0] == "-n":
            newline, args = False, args[1:]
        return " ".join(args) + ("\n" if newline else ""), 0

    def _props(self) -> dict[str, str]:
        p = self.phone
        return {
            "ro.product.model": p.model,
            "ro.product.manufacturer": p.manufacturer,
            "ro.product.device": "scopectl_sim",
            "ro.build.version.release": p.android_version,
            "ro.build.version.sdk": str(p.sdk),
            "ro.serialno": p.serial,
            "ro.boot.serialno": p.serial,
            "sys.boot_completed": "1",
        }

    def _getprop(self, args: list[str]) -> tuple[str, int]:
        props = self._props()
        if not args:
            return "".join(f"[{k}]: [{v}]\n" for k, v in sorted(props.items())), 0
        if len(args) > 2:
            return "getprop: too many arguments\n", 1
        value = props.get(args[0], args[1] if len(args) == 2 else "")
        return f"{value}\n", 0

    def _dumpsys(self, args: list[str]) -> tuple[str, int]:
        p = self.phone
        if args == ["battery"]:
            text = (
                "Current Battery Service state:\n"
                "  AC powered: false\n  USB powered: true\n  Wireless powered: false\n"
                "  Max charging current: 500000\n  Max charging voltage: 5000000\n"
                "  Charge counter: 2511000\n  status: 2\n  health: 2\n  present: true\n"
                f"  level: {p.battery_pct}\n  scale: 100\n  voltage: {p.battery_mv}\n"
                "  temperature: 281\n  technology: Li-ion\n"
            )
            return text, 0
        if args == ["power"]:
            wake = "Awake" if p.awake else "Asleep"
            text = (
                "POWER MANAGER (dumpsys power)\n\nPower Manager State:\n"
                f"  mDirty=0x0\n  mWakefulness={wake}\n  mWakefulnessChanging=false\n"
                f"  mIsPowered=true\n  mHoldingDisplaySuspendBlocker={'true' if p.awake else 'false'}\n"
            )
            return text, 0
        if args in (["window"], ["window", "policy"]):
            showing = "true" if p.locked else "false"
            text = (
                "WINDOW MANAGER POLICY STATE (dumpsys window policy)\n"
                f"    mScreenOnEarly={'true' if p.awake else 'false'} mScreenOnFully={'true' if p.awake else 'false'}\n"
                f"    mDreamingLockscreen={showing} mDreamingSleepToken=null\n"
                f"    isStatusBarKeyguard={showing} mShowingDream=false\n"
                f"  mCurrentFocus=Window{{5a1 u0 {p.foreground}}}\n"
            )
            return text, 0
        if not args:
            return "dumpsys: needs a service name in this simulator\n", 1
        return f"Can't find service: {args[0]}\n", 0

    def _df(self, args: list[str]) -> tuple[str, int]:
        paths = [a for a in args if not a.startswith("-")]
        flags = [a for a in args if a.startswith("-")]
        if any(f not in ("-k", "-h") for f in flags) or "-h" in flags:
            return f"df: unsupported option {' '.join(flags)} in this simulator\n", 1
        lines = ["Filesystem     1K-blocks     Used Available Use% Mounted on\n"]
        for path in paths or ["/sdcard"]:
            if self.phone.lookup(path) is None:
                return f"df: {path}: No such file or directory\n", 1
            total = self.phone.capacity_bytes // 1024
            free = self.phone.free_bytes() // 1024
            used = max(0, total - free)
            pct = (100 * used + total - 1) // total
            lines.append(f"/dev/fuse      {total:>9} {used:>8} {free:>9} {pct:>3}% /storage/emulated\n")
        return "".join(lines), 0

    def _ls(self, args: list[str]) -> tuple[str, int]:
        show_all = False
        paths: list[str] = []
        for arg in args:
            if arg.startswith("-") and len(arg) > 1:
                if set(arg[1:]) - {"a", "1"}:
                    return f"ls: unsupported option {arg} in this simulator\n", 1
                show_all = show_all or "a" in arg
            else:
                paths.append(arg)
        out: list[str] = []
        rc = 0
        for path in paths or ["/"]:
            entries = self.phone.listdir(path)
            if entries is None:
                if isinstance(self.phone.lookup(path), SimFile):
                    out.append(path + "\n")
                else:
                    out.append(f"ls: {path}: No such file or directory\n")
                    rc = 1
                continue
            out.extend(f"{n}\n" for n, *_ in entries if show_all or not n.startswith("."))
        return "".join(out), rc

    def _stat(self, args: list[str]) -> tuple[str, int]:
        if len(args) < 3 or args[0] != "-c":
            return "stat: this simulator supports only 'stat -c FORMAT FILE...'\n", 1
        fmt, paths = args[1], args[2:]
        out: list[str] = []
        rc = 0
        for path in paths:
            entry = self.phone.lookup(path)
            if entry is None:
                out.append(f"stat: '{path}': No such file or directory\n")
                rc = 1
                continue
            size = len(entry.data) if isinstance(entry, SimFile) else 4096
            mtime = entry.mtime if isinstance(entry, SimFile) else 0
            kind = "regular file" if isinstance(entry, SimFile) else "directory"
            text = fmt.replace("%s", str(size)).replace("%Y", str(mtime)).replace("%n", path)
            out.append(text.replace("%F", kind) + "\n")
        return "".join(out), rc

    def _sha256sum(self, args: list[str]) -> tuple[str, int]:
        out: list[str] = []
        rc = 0
        for path in [a for a in args if a != "--"]:
            entry = self.phone.lookup(path)
            if entry == "dir":
                out.append(f"sha256sum: {path}: Is a directory\n")
                rc = 1
            elif isinstance(entry, SimFile):
                out.append(f"{hashlib.sha256(bytes(entry.data)).hexdigest()}  {path}\n")
            else:
                out.append(f"sha256sum: {path}: No such file or directory\n")
                rc = 1
        return "".join(out), rc

    def _am(self, args: list[str]) -> tuple[str, int]:
        if not args or args[0] != "start":
            return "Error: this simulator supports only 'am start'\n", 255
        action = None
        i = 1
        while i < len(args):
            if args[i] == "-W":
                i += 1
            elif args[i] == "-a" and i + 1 < len(args):
                action, i = args[i + 1], i + 2
            else:
                return f"Error: Unknown option: {args[i]}\n", 255
        if action is None:
            return "Error: no intent given\n", 255
        head = f"Starting: Intent {{ act={action} }}\n"
        if not self.phone.start_activity(action):
            return head + f"Error: Activity not started, unable to resolve Intent {{ act={action} }}\n", 0
        activity = "com.android.camera/.Camera" if action == STILL_IMAGE_CAMERA else "?"
        return (
            head
            + f"Status: ok\nLaunchState: WARM\nActivity: {activity}\nTotalTime: 212\nWaitTime: 215\nComplete\n",
            0,
        )

    def _input(self, args: list[str]) -> tuple[str, int]:
        if len(args) < 2 or args[0] != "keyevent":
            return "Error: this simulator supports only 'input keyevent KEY...'\n", 1
        codes: list[int] = []
        for key in args[1:]:
            if key.isdigit():
                codes.append(int(key))
            elif key in KEYCODES:
                codes.append(KEYCODES[key])
            else:
                return f"Error: unknown key code '{key}'\n", 1
        for code in codes:
            self.phone.key_event(code)
        return "", 0

    def _rm(self, args: list[str]) -> tuple[str, int]:
        force = False
        paths: list[str] = []
        options_done = False
        for arg in args:
            if not options_done and arg == "--":
                options_done = True
            elif not options_done and arg.startswith("-") and len(arg) > 1:
                if set(arg[1:]) - {"f"}:
                    return f"rm: unsupported option {arg} in this simulator\n", 1
                force = True
            else:
                paths.append(arg)
        out: list[str] = []
        rc = 0
        for path in paths:
            entry = self.phone.lookup(path)
            if entry == "dir":
                out.append(f"rm: {path}: Is a directory\n")
                rc = 1
            elif not self.phone.remove(path) and not force:
                out.append(f"rm: {path}: No such file or directory\n")
                rc = 1
        return "".join(out), rc

    def _wm(self, args: list[str]) -> tuple[str, int]:
        if args == ["dismiss-keyguard"]:
            self.phone.dismiss_keyguard()
            return "", 0
        return f"Unknown command: {' '.join(args)}\n", 255
