"""Writing files so that a reader (or a resumed run) never finds half of one."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Calls `write(temporary)` on a hidden file beside `path` (".<name>.<random>.part"), then renames it over
    `path`: readers see the old file or the whole new one. The temporary file is removed if anything raises,
    and its hidden name keeps folder scans (find_clips, the cache) from taking it for a finished file."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
