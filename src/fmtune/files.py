"""Replacing a file so that a reader or a crash sees the old content or the new, never a torn one."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from fmtune import jsonio

log = logging.getLogger("fmtune")


def replace(path: Path, content: bytes, *, sync: bool = False, unlink_first: bool = False) -> None:
    """Write ``content`` to a temporary file beside ``path``, then rename it over ``path``.

    ``sync`` flushes the data to disk before the rename, for records that must survive a power
    loss. ``unlink_first`` is for files rewritten many times a second: on ext4, renaming over an
    existing file makes the kernel write the new data out at once (auto_da_alloc), which costs
    more than all the rest, so the old file is removed first. A crash between the two leaves only
    the complete temporary file, which ``recover`` puts in place; readers may meanwhile find no
    file, so use it only for files that nothing reads while they are written.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except FileNotFoundError:  # first write there (checking every time costs a system call)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
            if sync:
                out.flush()
                os.fsync(out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if unlink_first:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    os.rename(tmp, path)


def recover(directory: Path) -> None:
    """Finish the writes a crash cut short under ``directory``: a temporary file whose target is
    missing and which holds complete JSON takes the target's place; any other one is dropped."""
    for tmp in directory.rglob(".*.tmp"):
        target = tmp.with_name(tmp.name[1 : -len(".tmp")])
        try:  # a diverged trial's file holds NaN
            complete = not target.exists() and isinstance(jsonio.loads(tmp.read_bytes()), dict)
        except ValueError:
            complete = False
        if complete:
            os.rename(tmp, target)
            log.warning("recovered %s from an interrupted write", target)
        else:
            tmp.unlink()
