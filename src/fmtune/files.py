"""Replacing a file so that a reader or a crash sees the old content or the new, never a torn one.

Every file the coordinator writes goes through ``replace``. The directories it writes may be
shared with workers (a volume they mount, a local work dir), so nothing there is trusted: the
temporary file has a random name and is created with ``O_EXCL | O_NOFOLLOW``, so a file or a
symlink planted at a guessable name makes the write fail instead of sending it elsewhere; the
rename replaces a symlink at the target itself, never the file it points to.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import stat
from pathlib import Path

from fmtune import jsonio

log = logging.getLogger("fmtune")

# Exclusive, no symlink followed, not inherited by the processes the coordinator starts.
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_TEMPORARY = re.compile(r"\.(?P<target>.+?)(?:\.[0-9a-f]{16})?\.tmp", re.DOTALL)  # used with fullmatch


def temporary_name(path: Path) -> Path:
    """A fresh temporary name beside ``path``: ``.<name>.<16 random hex digits>.tmp``."""
    return path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")


def target_of(tmp: Path) -> Path | None:
    """The file a temporary file of ``replace``'s stands for (None: not one of them)."""
    match = _TEMPORARY.fullmatch(tmp.name)
    return None if match is None else tmp.with_name(match["target"])


def _create(path: Path) -> tuple[int, Path]:
    """A new temporary file beside ``path``, opened for writing; its directory is made if missing."""
    for attempt in range(2):
        tmp = temporary_name(path)
        try:
            return os.open(tmp, _CREATE, 0o644), tmp
        except FileNotFoundError:  # first write there (checking every time costs a system call)
            if attempt:
                raise
            path.parent.mkdir(parents=True, exist_ok=True)
    raise AssertionError("unreachable")


def replace(path: Path, content: bytes, *, sync: bool = False, unlink_first: bool = False) -> None:
    """Write ``content`` to a new temporary file beside ``path``, then rename it over ``path``.

    ``sync`` flushes the data to disk before the rename, for records that must survive a power
    loss. ``unlink_first`` is for files rewritten many times a second: on ext4, renaming over an
    existing file makes the kernel write the new data out at once (auto_da_alloc), which costs
    more than all the rest, so the old file is removed first. A crash between the two leaves only
    the complete temporary file, which ``recover`` puts in place; readers may meanwhile find no
    file, so use it only for files that nothing reads while they are written.

    Raises OSError (a full disk, a planted file in the way) with ``path`` as it was.
    """
    fd, tmp = _create(path)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
            if sync:
                out.flush()
                os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if unlink_first:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    os.rename(tmp, path)  # if this fails after the unlink, ``recover`` puts the complete file in place


def recover(directory: Path) -> None:
    """Finish the writes a crash cut short under ``directory``: a temporary file whose target is
    missing and which holds complete JSON takes the target's place (the newest, if several); any
    other one is dropped. Only regular files are read: a symlink is dropped unread."""
    found: dict[Path, list[tuple[float, Path]]] = {}
    for tmp in directory.rglob(".*.tmp"):
        target = target_of(tmp)
        try:
            info = tmp.lstat()
        except FileNotFoundError:
            continue
        if target is None or not stat.S_ISREG(info.st_mode):
            tmp.unlink(missing_ok=True)
            continue
        found.setdefault(target, []).append((info.st_mtime, tmp))
    for target, candidates in found.items():
        placed = target.exists() or target.is_symlink()
        for _, tmp in sorted(candidates, reverse=True):
            if not placed and _complete(tmp):
                os.rename(tmp, target)
                placed = True
                log.warning("recovered %s from an interrupted write", target)
            else:
                tmp.unlink(missing_ok=True)


def read_regular(path: Path) -> bytes:
    """``path``'s bytes, refusing a symlink (OSError) so that a planted one is not read through."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def _complete(tmp: Path) -> bool:
    try:  # a diverged trial's file holds NaN
        return isinstance(jsonio.loads(read_regular(tmp)), dict)
    except (ValueError, OSError):
        return False
