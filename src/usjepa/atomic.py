"""``atomic_write``: a file appears whole or not at all, even after a crash of the process or of the host.

The bytes go to a temporary file beside the target, which is flushed and fsynced, renamed over the target, and
then the folder is fsynced so that the rename itself is on disk. Readers see the old file or the new one, never
a part; a state file written after a shard can therefore never name a shard that is not on disk.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".tmp"  # temporary files are ".NAME.PID.tmp" beside the target


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """``with atomic_write(p) as f: f.write(...)``: ``p`` is replaced only when the block ends without error;
    on an error the temporary file is removed and the error propagates."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text.encode())
