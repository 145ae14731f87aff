"""The inputs of ``run_app.py process``: files, folders, glob patterns and list files, expanded into the files to process.

A folder stands for the videos and images directly inside it (by suffix, in name order; not its subfolders
nor this command's own outputs). An argument that names no existing path but holds a glob character
(``*``, ``?``, ``[``) is a pattern, expanded in name order (``**`` reaches into subfolders); one that matches
nothing is an error, as is a missing file. A list file (``--from-list FILE``) holds one input per line, any of
the above; blank lines and lines starting with ``#`` are skipped, and relative paths are taken from the list
file's folder. The same file reached twice is processed once.
"""
from __future__ import annotations

import glob
from pathlib import Path
from typing import Iterable, Sequence

from app.core.exit_codes import UsageError
from app.core.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES

OWN_OUTPUT_ENDINGS = (".annotated.mp4", ".annotated.png", ".pose.png")
"""Files of these names in an input folder are this command's outputs (``--out`` the folder itself), not inputs."""

GLOB_CHARACTERS = frozenset("*?[")


def folder_inputs(folder: Path) -> list[Path]:
    """The videos and images directly inside ``folder``, by suffix, in name order, leaving out this command's
    own outputs; ``UsageError`` for none."""
    suffixes = set(IMAGE_SUFFIXES) | set(VIDEO_SUFFIXES)
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes and p.is_file()
                   and not p.name.endswith(OWN_OUTPUT_ENDINGS))
    if not found:
        raise UsageError(f"{folder}: a folder without videos or images (files ending in "
                         f"{', '.join(sorted(suffixes))})")
    return found


def is_pattern(text: str) -> bool:
    """Whether ``text`` holds a glob character."""
    return any(c in GLOB_CHARACTERS for c in text)


def expand_one(item: str | Path) -> list[Path]:
    """The files one argument stands for: itself, a folder's videos and images, or a pattern's matches."""
    path = Path(item)
    if path.is_dir():
        return folder_inputs(path)
    if path.is_file():
        return [path]
    if is_pattern(str(item)):
        matches = sorted(Path(m) for m in glob.glob(str(item), recursive=True))
        if not matches:
            raise UsageError(f"{item}: a pattern that matches no file")
        files: list[Path] = []
        for match in matches:
            files += folder_inputs(match) if match.is_dir() else [match] if match.is_file() else []
        return files
    raise UsageError(f"{path}: no such file")


def read_list_file(list_file: Path) -> list[str]:
    """The inputs named in a list file, one a line (blank lines and ``#`` comments skipped), relative paths taken
    from the list file's folder; ``UsageError`` for a file that cannot be read or names nothing."""
    try:
        lines = Path(list_file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{list_file}: cannot be read as a list of inputs ({getattr(error, 'strerror', None) or error})")
    items = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not items:
        raise UsageError(f"{list_file}: a list file that names no input")
    base = Path(list_file).parent
    return [item if Path(item).is_absolute() else str(base / item) for item in items]


def expand_inputs(items: Sequence[str | Path], list_files: Iterable[Path] = ()) -> list[Path]:
    """Every file the arguments and list files stand for, in the order given, each once; ``UsageError`` for a
    missing file, an empty folder, a pattern matching nothing, or no input at all."""
    everything: list[str | Path] = list(items)
    for list_file in list_files:
        everything += read_list_file(list_file)
    if not everything:
        raise UsageError("no input: give INPUT files, folders or patterns, or --from-list FILE")
    files: list[Path] = []
    seen: set[Path] = set()
    for item in everything:
        for path in expand_one(item):
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                files.append(path)
    return files
