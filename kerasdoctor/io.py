"""Safe output: every file is written to a temporary sibling, then renamed into place."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> None:
    """Call write(tmp_path) and rename tmp_path over `path`; nothing partial is ever left."""
    target = Path(path)
    if target.is_dir():
        from kerasdoctor.errors import InputError

        raise InputError(f"--output: {target} is a directory")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.exists():
        from kerasdoctor.errors import InputError

        raise InputError(f"--output: directory {parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    # mkstemp creates 0600; give the file the mode a plain open() would (0666 less the umask)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    def _w(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    atomic_write(path, _w)
