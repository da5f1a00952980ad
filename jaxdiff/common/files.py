"""Writes that never leave a half-written file behind (temporary name, then rename), a lock that lets
concurrent invocations make a shared thing once, and PNGs."""

import contextlib
import json
import os
import shutil
import socket
import time
import uuid
from typing import Any, Callable, Iterator

import numpy as np

from jaxdiff.common.errors import UserError, short_reason


def _temporary_sibling(path: str) -> str:
    head, tail = os.path.split(os.path.abspath(path))
    return os.path.join(head, f".tmp-{tail}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a temporary path next to `path`; renames it onto `path` only if the block succeeds."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = _temporary_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_dir(path: str) -> Iterator[str]:
    """Yields a fresh temporary directory that replaces `path` (if any) only when the block succeeds."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = _temporary_sibling(path)
    os.makedirs(tmp)
    try:
        yield tmp
        old = None
        if os.path.exists(path):
            old = _temporary_sibling(path)
            os.replace(path, old)
        os.replace(tmp, path)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


LOCK_POLL_S = 10.0  # how often a process waiting for a lock looks again
LOCK_STALE_S = 3600.0  # a lock held this long by a process on another host is taken to be abandoned


def _holder(path: str) -> tuple[str, str, int | None]:
    """The lock's note, its host and its process id (None when unreadable: a note is written just after creation)."""
    with open(path) as f:
        note = f.read().strip()
    fields = dict(part.split("=", 1) for part in note.split() if "=" in part)
    pid = fields.get("pid", "")
    return note, fields.get("host", ""), int(pid) if pid.isdigit() else None


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's process: alive
        return False
    return False


@contextlib.contextmanager
def exclusive(path: str, what: str, log: Callable[[str], None] = print, poll_s: float = LOCK_POLL_S,
              stale_s: float = LOCK_STALE_S) -> Iterator[None]:
    """Holds the lock file `path` for the block, waiting while another process holds it.

    Invocations that start together (--member I --of N, a job array) make a shared thing once: each checks
    for it, takes this lock, and checks again before making it. The lock is created with O_EXCL (atomic on
    local and NFS file systems) and names its holder; a lock whose holder was on this host and has exited
    (SIGKILL, SIGTERM outside training) is taken over at once, and one held longer than `stale_s` from
    another host is a UserError that says to delete it.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    host = socket.gethostname()
    told = False
    while True:
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            pass
        try:
            note, holder_host, pid = _holder(path)
            age = time.time() - os.path.getmtime(path)
        except FileNotFoundError:
            continue  # released between the two looks: try again at once
        if holder_host == host and pid is not None and _process_gone(pid):
            log(f"taking over {path}: its holder ({note}) has exited")
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            continue
        if age > stale_s:
            raise UserError(f"{path} says {note or 'another process'} is making {what}, for {age / 60:.0f} min now; if "
                            f"that process is no longer running, delete {path} and rerun")
        if not told:
            log(f"waiting for {what}, which {note or 'another process'} is making ({path})")
            told = True
        time.sleep(poll_s)
    with os.fdopen(descriptor, "w") as f:
        f.write(f"host={host} pid={os.getpid()} since={time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def write_text(path: str, text: str) -> None:
    """Writes `text` to `path` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def write_json(path: str, obj: Any) -> None:
    """Writes `obj` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def damaged(path: str, error: BaseException, remedy: str) -> UserError:
    """The one-line UserError for a file that exists but cannot be read: the file, why, and what to do."""
    return UserError(f"{path} is damaged ({short_reason(error)}); {remedy}")


def read_json(path: str, remedy: str = "delete it and rerun the step that writes it") -> Any:
    """`path`'s JSON; a truncated or garbled file is a `damaged` UserError that says `remedy`."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise damaged(path, error, remedy) from error


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Maps model-space images in [-1, 1] to uint8 pixels."""
    return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def image_grid(images_NHWC: np.ndarray, ncols: int, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tiles uint8 images (N, H, W, C) into one (rows, ncols) grid image with `pad` pixels between."""
    n, h, w, c = images_NHWC.shape
    nrows = max(1, -(-n // ncols))
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), pad_value, np.uint8)
    for i, image in enumerate(images_NHWC):
        r, col = divmod(i, ncols)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = image
    return grid


def save_png(path: str, image_HWC: np.ndarray, scale: int = 1) -> None:
    """Saves a uint8 image as PNG atomically, upscaled `scale` times with nearest neighbours."""
    from PIL import Image

    image = Image.fromarray(np.asarray(image_HWC, np.uint8))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")

