"""Per-worker log files: what each worker printed, kept on disk and rotated.

A worker with a log directory (``init(log_dir=...)``; on a cluster, the session's
``logs/``) writes every line of its stdout and stderr, with the prefix naming the task
or actor, to ``worker-<pid>.log`` there, whether or not the lines also go to the driver.
A file over ``ACTORLIB_LOG_ROTATE_BYTES`` is renamed ``.1`` (``.1`` to ``.2``, and so
on, keeping ``ACTORLIB_LOG_ROTATE_BACKUP_COUNT`` of them) and a new one started, so a
chatty worker cannot fill the disk.
"""

from __future__ import annotations

import contextlib
import os
import threading

ROTATE_BYTES_ENV = "ACTORLIB_LOG_ROTATE_BYTES"
BACKUP_COUNT_ENV = "ACTORLIB_LOG_ROTATE_BACKUP_COUNT"
DEFAULT_ROTATE_BYTES = 512 * 1024 * 1024  # Ray's
DEFAULT_BACKUP_COUNT = 5  # Ray's


def _env_int(name: str, default: int, minimum: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


class RotatingLog:
    """One worker's log file; thread-safe (its task threads write at once)."""

    def __init__(self, path: str, max_bytes: int, backups: int) -> None:
        self.path = path
        self._max = max_bytes
        self._backups = backups
        self._lock = threading.Lock()
        self._file = open(path, "ab")  # noqa: SIM115 (kept open, closed by close())
        self._size = self._file.tell()

    def write(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        with self._lock:
            if self._file.closed:
                return
            if self._size and self._size + len(data) > self._max:
                self._rotate()
            self._file.write(data)
            self._file.flush()  # a worker may be killed: what it wrote is on disk
            self._size += len(data)

    def _rotate(self) -> None:
        self._file.close()
        path = self.path
        if self._backups:
            for i in range(self._backups - 1, 0, -1):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{path}.{i}", f"{path}.{i + 1}")
            os.replace(path, f"{path}.1")
        self._file = open(path, "wb")  # noqa: SIM115
        self._size = 0

    def close(self) -> None:
        with self._lock:
            self._file.close()


def worker_log(log_dir: str | None, pid: int | None = None) -> RotatingLog | None:
    """The log of worker ``pid`` (default: this process) in ``log_dir``; None without
    one. The directory is made (mode 0700) if missing."""
    if not log_dir:
        return None
    os.makedirs(log_dir, 0o700, exist_ok=True)
    pid = os.getpid() if pid is None else pid
    return RotatingLog(
        os.path.join(log_dir, f"worker-{pid}.log"),
        _env_int(ROTATE_BYTES_ENV, DEFAULT_ROTATE_BYTES, 1),
        _env_int(BACKUP_COUNT_ENV, DEFAULT_BACKUP_COUNT, 0),
    )
