"""The checkpoint file: a one-line header with the SHA-256 of the payload, then the payload.

    PFEDKIT-CHECKPOINT 1 sha256=<64 hex digits> bytes=<payload length>\\n<torch.save bytes>

Writing is atomic: the bytes go to a temporary file in the same folder, which is flushed and
fsync'ed, renamed over the target (``os.replace``), and the folder is fsync'ed so the rename
itself is durable. A process killed at any point leaves either the previous checkpoint or the
new one, never a mix. Reading verifies the length and the checksum before unpickling anything:
a truncated or altered file is refused with a `ConfigError` naming it, and is never loaded.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path
from typing import Any

import torch

from pfedkit.core.errors import ConfigError

MAGIC = b"PFEDKIT-CHECKPOINT 1"
_HEADER = re.compile(rb"PFEDKIT-CHECKPOINT 1 sha256=([0-9a-f]{64}) bytes=([0-9]+)\n")
_MAX_HEADER = 128
_FIX = "delete it and rerun with --overwrite, or restore the file from a copy"


def temp_path(path: Path) -> Path:
    """Where ``path`` is written before the rename (same folder, hidden, one per target)."""
    return path.with_name(f".{path.name}.tmp")


def write_checkpoint(path: Path, obj: dict[str, Any]) -> None:
    """Atomically write ``obj`` (tensors, lists, dicts, numbers, strings) to ``path``."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    payload = buffer.getvalue()
    header = MAGIC + f" sha256={hashlib.sha256(payload).hexdigest()} bytes={len(payload)}\n".encode()
    tmp = temp_path(path)
    with open(tmp, "wb") as f:
        f.write(header)
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_folder(path.parent)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The object written by `write_checkpoint`, after checking its length and SHA-256.

    Raises ConfigError (one line naming ``path`` and the fix) for a file that is not a pfedkit
    checkpoint, is truncated, or whose bytes do not match the checksum.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read checkpoint {str(path)!r}: {err.strerror or err}") from None
    match = _HEADER.match(data[:_MAX_HEADER])
    if match is None:
        raise ConfigError(f"checkpoint {str(path)!r} has no pfedkit checksum header (damaged, or not written "
                          f"by this pfedkit version); {_FIX}")
    digest, size = match.group(1).decode(), int(match.group(2))
    payload = data[match.end():]
    if len(payload) != size:
        raise ConfigError(f"checkpoint {str(path)!r} is truncated or extended ({len(payload)} payload bytes, "
                          f"expected {size}); {_FIX}")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise ConfigError(f"checkpoint {str(path)!r} does not match its SHA-256 checksum (altered or damaged); "
                          f"{_FIX}")
    try:  # weights_only: tensors and plain containers, nothing executable, even from a matching file
        return torch.load(io.BytesIO(payload), weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is reported as the file's
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"checkpoint {str(path)!r} passed its checksum but cannot be loaded ({first}); "
                          f"{_FIX}") from None


def _fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
