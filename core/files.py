"""Writing a directory so that readers never see half of it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_directory(out: Path) -> Iterator[Path]:
    """Yield an empty staging directory beside `out`; on success it becomes `out` in one rename.

    Several processes may build the same cache at once (N API workers starting together): the
    first rename wins and the others keep what it wrote. On an error nothing is left behind.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        yield staging
        try:
            os.replace(staging, out)
        except OSError:
            if not out.is_dir():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
