"""A dataset file that exists but cannot be read becomes one line naming the file and the fix.

Loaders wrap the read and decode of each file in `reading`; a truncated gzip stream, a damaged
pickle, zip or ``.npy`` array, an image Pillow cannot decode, or a header that does not match the
format then raises `DatasetCorruptError` (exit code 2 from the CLI) instead of a traceback.
"""

from __future__ import annotations

import pickle
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pfedkit.core.errors import DatasetCorruptError

READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError, EOFError, ValueError, zlib.error, pickle.UnpicklingError, zipfile.BadZipFile, KeyError,
)
"""What reading and decoding a damaged file raises (gzip, zlib, pickle, numpy, json, Pillow)."""


def damaged(path: Path, reason: str, fix: str) -> DatasetCorruptError:
    """The error for ``path``: ``<path> is damaged (<reason>); <fix>``."""
    return DatasetCorruptError(f"{path} is damaged ({reason}); {fix}")


@contextmanager
def reading(path: Path, fix: str) -> Iterator[None]:
    """Turn any `READ_ERRORS` raised inside the block into `damaged` for ``path`` with ``fix``
    (a `DatasetCorruptError` raised inside passes through unchanged)."""
    try:
        yield
    except DatasetCorruptError:
        raise
    except READ_ERRORS as err:
        raise damaged(path, _reason(err), fix) from None


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
