"""The documentation site (``mkdocs.yml`` + ``docs/``).

* every page in the nav exists, and every page is in the nav;
* every internal link and image resolves, anchors included;
* ``mkdocs build --strict`` succeeds (it fails on any of the above, too);
* every ``scopectl`` command line shown in the docs names commands and options the CLI really has.

The link checker is tested on a deliberately broken site, so these tests can fail.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MKDOCS_YML = REPO / "mkdocs.yml"
DOCS = REPO / "docs"

_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_INLINE_CODE = re.compile(r"`[^`]*`")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_ATTR_ID = re.compile(r"\{[^}]*#([\w-]+)[^}]*\}\s*$")
_HTML_ID = re.compile(r"""<[^>]+\bid=["']([^"']+)["']""")


# ----------------------------------------------------------------------------- site structure


def nav_pages(config_path: Path) -> list[str]:
    """The Markdown files the nav of ``config_path`` names (relative to its docs_dir)."""
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    pages: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, str):
            if not re.match(r"[a-z]+://", node):
                pages.append(node)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)

    walk(config.get("nav", []))
    return pages


def docs_dir(config_path: Path) -> Path:
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    return config_path.parent / str(config.get("docs_dir", "docs"))


def missing_nav_pages(config_path: Path) -> list[str]:
    root = docs_dir(config_path)
    return [page for page in nav_pages(config_path) if not (root / page).is_file()]


def pages_not_in_nav(config_path: Path) -> list[str]:
    root = docs_dir(config_path)
    listed = set(nav_pages(config_path))
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*.md")
        if p.relative_to(root).as_posix() not in listed
    )


# ----------------------------------------------------------------------------- links and anchors


def _prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines outside fenced code blocks, with inline code removed."""
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, _INLINE_CODE.sub("", line)


def slugify(title: str) -> str:
    """Python-Markdown's ``toc`` slug (the one MkDocs uses) of a heading's text."""
    text = re.sub(r"<[^>]+>", "", title)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links -> their text
    text = text.replace("`", "").replace("*", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for _, line in _prose_lines(page.read_text(encoding="utf-8")):
        found.update(_HTML_ID.findall(line))
        heading = _HEADING.match(line)
        if not heading:
            continue
        title = heading.group(2)
        explicit = _ATTR_ID.search(title)
        if explicit:
            found.add(explicit.group(1))
        else:
            slug, n = slugify(title), 1
            while slug in found:  # repeated headings get _1, _2, ...
                slug = f"{slugify(title)}_{n}"
                n += 1
            found.add(slug)
    return found


def broken_links(root: Path) -> list[str]:
    """``page:line: target (why)`` for every internal link or image in ``root`` that does not resolve."""
    problems: list[str] = []
    for page in sorted(root.rglob("*.md")):
        rel = page.relative_to(root).as_posix()
        for number, line in _prose_lines(page.read_text(encoding="utf-8")):
            for target in _LINK.findall(line):
                if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target):  # http:, https:, mailto:
                    continue
                path_part, _, anchor = target.partition("#")
                where = f"{rel}:{number}: {target}"
                if path_part.startswith("/"):
                    problems.append(f"{where} (absolute link: use a path relative to the page)")
                    continue
                dest = (page.parent / path_part).resolve() if path_part else page
                if root.resolve() not in dest.parents and dest != root.resolve():
                    problems.append(f"{where} (outside docs/: MkDocs cannot link it)")
                    continue
                if not dest.is_file():
                    problems.append(f"{where} (no such file)")
                    continue
                if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                    problems.append(f"{where} (no heading with this anchor in {dest.name})")
    return problems


# ----------------------------------------------------------------------------- mkdocs


def mkdocs_build(config_path: Path, site_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(config_path),
            "--site-dir",
            str(site_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def require_mkdocs() -> None:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[test]' installs it)")


# ----------------------------------------------------------------------------- tests: the real site


def test_every_nav_page_exists() -> None:
    missing = missing_nav_pages(MKDOCS_YML)
    assert not missing, f"pages named in mkdocs.yml's nav but missing from docs/: {missing}"


def test_every_page_is_in_the_nav() -> None:
    orphans = pages_not_in_nav(MKDOCS_YML)
    assert not orphans, f"pages in docs/ that mkdocs.yml's nav does not list (add them to the nav): {orphans}"


def test_internal_links_resolve() -> None:
    problems = broken_links(DOCS)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_site_builds_with_strict_checks(tmp_path: Path) -> None:
    require_mkdocs()
    missing = missing_nav_pages(MKDOCS_YML)
    proc = mkdocs_build(MKDOCS_YML, tmp_path / "site")
    assert proc.returncode == 0, (
        (f"missing pages: {missing}\n" if missing else "")
        + "mkdocs build --strict failed:\n"
        + proc.stderr[-4000:]
    )
    for page in nav_pages(MKDOCS_YML):
        html = tmp_path / "site" / (page[:-3] + "/index.html" if page != "index.md" else "index.html")
        assert html.is_file(), f"{page} was not rendered"
    for figure in ("wiring.svg", "hw-section.svg"):
        assert (tmp_path / "site" / "figures" / figure).is_file(), figure


# ----------------------------------------------------------------------------- tests: the checks can fail


def _tiny_site(root: Path, *, broken: bool) -> Path:
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "index.md").write_text(
        "# Home\n\nSee [the guide](guide.md#usage) and [a section](#home).\n"
        + ("Also [gone](nowhere.md), [bad anchor](guide.md#no-such-heading).\n" if broken else ""),
        encoding="utf-8",
    )
    (root / "docs" / "guide.md").write_text("# Guide\n\n## Usage\n\n`[not a link](x.md)`\n", encoding="utf-8")
    nav = ["index.md", "guide.md"] + (["missing.md"] if broken else [])
    config = root / "mkdocs.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "site_name": "t",
                "docs_dir": "docs",
                "theme": {"name": "mkdocs"},
                "validation": {"omitted_files": "warn", "unrecognized_links": "warn", "anchors": "warn"},
                "nav": nav,
            }
        ),
        encoding="utf-8",
    )
    return config


def test_checks_catch_broken_links_and_missing_pages(tmp_path: Path) -> None:
    good = _tiny_site(tmp_path / "good", broken=False)
    bad = _tiny_site(tmp_path / "bad", broken=True)
    assert broken_links(good.parent / "docs") == []
    assert missing_nav_pages(good) == []
    problems = broken_links(bad.parent / "docs")
    assert any("nowhere.md (no such file)" in p for p in problems)
    assert any("guide.md#no-such-heading (no heading" in p for p in problems)
    assert len(problems) == 2
    assert missing_nav_pages(bad) == ["missing.md"]

    require_mkdocs()
    assert mkdocs_build(good, tmp_path / "good-site").returncode == 0
    failed = mkdocs_build(bad, tmp_path / "bad-site")
    assert failed.returncode != 0
    assert "nowhere.md" in failed.stderr or "missing.md" in failed.stderr


def test_slugs_match_python_markdown() -> None:
    toc = pytest.importorskip("markdown.extensions.toc")
    for title in [
        "Flashing the firmware fails",
        "Writing `rig.yaml`",
        "Over TCP (port 5555) — recommended",
        "The simulated rig: `scopectl rig sim`",
        "µm and Ω",
    ]:
        plain = title.replace("`", "")
        assert slugify(title) == toc.slugify(plain, "-"), title


# ----------------------------------------------------------------------------- tests: commands shown in the docs


@dataclass(frozen=True)
class ShownCommand:
    page: str
    line: int
    argv: list[str]


def shown_commands(root: Path) -> list[ShownCommand]:
    """``scopectl …`` command lines in the shell code blocks of every page."""
    found: list[ShownCommand] = []
    for page in sorted(root.rglob("*.md")):
        lines = page.read_text(encoding="utf-8").splitlines()
        in_shell = False
        pending = ""
        start = 0
        for number, line in enumerate(lines, start=1):
            fence = _FENCE.match(line)
            if fence:
                lang = line.strip().lstrip("`~").strip().lower()
                in_shell = not in_shell and lang in ("bash", "sh", "shell", "console")
                pending = ""
                continue
            if not in_shell:
                continue
            text = line.strip()
            if text.startswith("$ "):
                text = text[2:]
            if not pending:
                start = number
            pending += " " + text.rstrip("\\")
            if text.endswith("\\"):
                continue
            command, pending = pending.split("#", 1)[0].strip(), ""
            words = shlex.split(command) if command else []
            while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):  # VAR=value prefixes
                words.pop(0)
            if words and words[0] == "scopectl":
                argv = words[1:]
                if "|" in argv:
                    argv = argv[: argv.index("|")]
                found.append(ShownCommand(page.relative_to(root).as_posix(), start, argv))
    return found


def command_problems(cli: Any, argv: list[str]) -> list[str]:
    """What in ``argv`` the command tree ``cli`` (Typer's click commands, duck-typed) does not have."""
    problems: list[str] = []
    command = cli
    path: list[str] = []
    words = list(argv)
    while words:
        word = words.pop(0)
        if word.startswith("-"):
            option = word.split("=", 1)[0]
            param = next((p for p in command.params if option in getattr(p, "opts", ())), None)
            if param is None:
                problems.append(f"'scopectl {' '.join(path)}' has no option {option}")
            elif not getattr(param, "is_flag", False) and "=" not in word and words:
                words.pop(0)  # the option's value
            continue
        if hasattr(command, "get_command"):  # a group: the word names a sub-command
            sub = command.get_command(
                command.make_context(" ".join(["scopectl", *path]), [], resilient_parsing=True), word
            )
            if sub is None:
                problems.append(f"'scopectl {' '.join([*path, word])}': no such command")
                return problems
            command = sub
            path.append(word)
    if hasattr(command, "get_command"):
        problems.append(f"'scopectl {' '.join(path)}' needs a sub-command")
    return problems


def test_commands_shown_in_the_docs_exist() -> None:
    import typer

    from scopectl.cli.main import app

    cli = typer.main.get_command(app)
    commands = shown_commands(DOCS)
    assert len(commands) >= 15, "the user guide shows every command"
    problems = [
        f"{c.page}:{c.line}: {problem}" for c in commands for problem in command_problems(cli, c.argv)
    ]
    assert not problems, "the docs show commands the CLI does not have:\n" + "\n".join(problems)


def test_no_fenced_code_inside_lists() -> None:
    """Python-Markdown (without extensions MkDocs would have to download) renders an indented fence as text."""
    indented = [
        f"{page.relative_to(DOCS).as_posix()}:{number}"
        for page in sorted(DOCS.rglob("*.md"))
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1)
        if re.match(r"^\s+(```|~~~)", line)
    ]
    assert not indented, (
        f"fenced code blocks inside list items (indent the code 8 spaces instead): {indented}"
    )
