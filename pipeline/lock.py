"""One writer per experiment: the driver of `hinas run/search/retrain` holds a lock file.

The lock is ``OUTPUT_DIR/.NAME.lock``, beside the experiment folder rather than inside it, so
it is taken before the folder's existence is checked and ``--overwrite`` cannot delete an
experiment another driver is writing. It holds JSON naming the holder: host, pid, the pid's
start time (a pid reused by another program is not mistaken for the holder), command and since
when. A second driver of the same experiment is refused with one line naming the holder.

A lock whose holder is gone is taken over without manual cleanup:

* on the holder's host, when its pid is dead (a SIGKILLed or crashed driver);
* from another host, when its lease expired: the holder renews the lease by touching the file
  every ``LEASE_S / 4`` seconds (a daemon thread), so a lock not touched for ``LEASE_S``
  seconds (``$HINAS_LOCK_LEASE_S``, default 60) belongs to a lost driver or node. "Now" is the
  modification time of a probe file written in the same folder, i.e. the file server's clock,
  so clock skew between the nodes does not matter.

Guarantees. On a local disk, creating the lock with ``O_CREAT | O_EXCL`` is atomic: two drivers
never both hold it, and a dead holder is detected at once. Breaking a stale lock is itself
serialised by a second ``O_EXCL`` file (``.NAME.lock.break``), so two drivers that find the
same stale lock do not both take it. On shared storage (NFSv3+/NFSv4, Lustre, GPFS) ``O_EXCL``
is atomic too, but a holder on another host is known only by its lease: a driver that is frozen
(or cut off from the storage) for longer than the lease loses the lock to a newcomer, and is
told so on its next renewal (it warns; it cannot stop work already under way). NFSv2 and object
stores mounted as file systems (s3fs, gcsfuse) give no atomic exclusive create: the lock is
then advisory only. Containers that share a storage folder must have distinct host names.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Optional

LEASE_ENV = "HINAS_LOCK_LEASE_S"
DEFAULT_LEASE_S = 60.0
EMPTY_GRACE_S = 10.0  # an empty lock older than this was left by a creator that died before writing it


class LockHeld(RuntimeError):
    """Another live driver holds the experiment; the message names it and says what to do."""


def lease_seconds() -> float:
    return float(os.environ.get(LEASE_ENV) or DEFAULT_LEASE_S)


def lock_path(experiment_dir: Path) -> Path:
    experiment_dir = Path(experiment_dir)
    return experiment_dir.parent / f".{experiment_dir.name}.lock"


def _start_time(pid: int) -> Optional[str]:
    """The pid's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None if
    there is no such process (or no /proc)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive_here(holder: Dict) -> bool:
    """Whether the holder, a process of this host, still runs."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    started = _start_time(pid)
    if started is not None:  # a pid the kernel gave to another program since is not the holder
        return holder.get("started") in (None, started)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fs_now(folder: Path) -> float:
    """The current time on the file system of ``folder`` (its server's clock on NFS)."""
    probe = folder / f".hinas-clock.{socket.gethostname()}.{os.getpid()}.{threading.get_ident()}"
    try:
        probe.touch()
        return probe.stat().st_mtime
    finally:
        probe.unlink(missing_ok=True)


def _read(path: Path) -> Optional[Dict]:
    try:
        holder = json.loads(path.read_text())
        return holder if isinstance(holder, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):  # a holder killed between create and write, or damage
        return {}


class ExperimentLock:
    """The lock of one experiment folder; :meth:`acquire` takes it or raises :class:`LockHeld`."""

    def __init__(self, experiment_dir: Path, command: str):
        self.path = lock_path(experiment_dir)
        self.experiment_dir = Path(experiment_dir)
        self.command = command
        self.lease = lease_seconds()
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "started": _start_time(os.getpid()),
                   "command": command, "since": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
                   "lease_s": self.lease}
        self.taken_over: Optional[Dict] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # ---- taking and giving back ------------------------------------------------------------
    def acquire(self) -> "ExperimentLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(20):  # each round: create, or judge the holder and maybe break its lock
            if self._create():
                self._thread = threading.Thread(target=self._renew, name="hinas-lock-lease", daemon=True)
                self._thread.start()
                return self
            holder = _read(self.path)
            if holder is None:  # released between our create and our read: try again
                continue
            if self._is_me(holder):
                return self
            reason = self._stale(holder)
            if reason is None:
                raise LockHeld(self._held_message(holder))
            if self._break(holder):
                self.taken_over = {**holder, "reason": reason}
            else:
                time.sleep(0.2)  # another driver is breaking it: see who wins
        raise LockHeld(f"cannot take the lock {self.path}: it keeps changing hands; is another driver starting?")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        holder = _read(self.path)
        if holder is not None and self._is_me(holder):
            self.path.unlink(missing_ok=True)

    # ---- internals -------------------------------------------------------------------------
    def _is_me(self, holder: Dict) -> bool:
        return holder.get("host") == self.me["host"] and holder.get("pid") == self.me["pid"] and \
            holder.get("started") == self.me["started"]

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, json.dumps(self.me).encode())
            os.fsync(fd)
        except OSError as exc:  # e.g. a full disk: leave no empty lock behind
            self.path.unlink(missing_ok=True)
            raise OSError(exc.errno, exc.strerror, str(self.path)) from exc
        finally:
            os.close(fd)
        return True

    def _stale(self, holder: Dict) -> Optional[str]:
        """Why the holder is gone, or None while it may still be working."""
        if holder and holder.get("host") == self.me["host"]:
            return None if _alive_here(holder) else f"pid {holder.get('pid')} is no longer running"
        try:
            age = _fs_now(self.path.parent) - self.path.stat().st_mtime
        except FileNotFoundError:
            return "released"
        if not holder:  # empty or damaged: its creator writes it within milliseconds of creating it
            return f"it was left empty or damaged {age:.0f} s ago" if age > min(self.lease, EMPTY_GRACE_S) else None
        lease = float(holder.get("lease_s") or self.lease)
        if age > lease:
            return f"its lease expired {age - lease:.0f} s ago (not renewed for {age:.0f} s)"
        return None

    def _break(self, holder: Dict) -> bool:
        """Remove the stale lock ``holder`` unless another driver is doing so or did already."""
        breaker = self.path.with_name(self.path.name + ".break")
        try:
            fd = os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:  # a breaker killed mid-break leaves its file: it is stale after a lease
                if _fs_now(self.path.parent) - breaker.stat().st_mtime > self.lease:
                    breaker.unlink(missing_ok=True)
            except FileNotFoundError:
                pass
            return False
        os.close(fd)
        try:
            if _read(self.path) == holder:  # still the lock we judged stale, not a new holder's
                self.path.unlink(missing_ok=True)
                return True
            return False
        finally:
            breaker.unlink(missing_ok=True)

    def _renew(self) -> None:
        """Touch the lock every quarter lease; warn once if another driver took it."""
        while not self._stop.wait(self.lease / 4):
            holder = _read(self.path)
            if holder is None or not self._is_me(holder):
                print(f"hinas {self.command}: warning: lost the lock {self.path} (this driver was not heard from "
                      f"for longer than its {self.lease:g} s lease); another driver may now write "
                      f"{self.experiment_dir}", file=sys.stderr, flush=True)
                return
            try:
                os.utime(self.path)
            except OSError:
                pass  # storage briefly away: the next beat tries again

    def _held_message(self, holder: Dict) -> str:
        who = (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} (`hinas {holder.get('command', '?')}`, "
               f"since {holder.get('since', '?')})") if holder else f"a driver that is still writing {self.path}"
        return (f"experiment {self.experiment_dir} is in use by {who}; wait for it to end, or stop it "
                f"(Ctrl-C, or kill {holder.get('pid', 'PID')} on {holder.get('host', 'its host')}) and continue "
                f"with --resume; a holder that died is taken over automatically "
                f"(on another host, once its {self.lease:g} s lease expires)")


_held: Dict[Path, ExperimentLock] = {}


def busy(experiment_dir: Path, command: str) -> bool:
    """Whether another live driver holds the experiment (then the one line naming it is printed).
    Only reads the lock, so a command refused for another reason leaves no trace."""
    lock = ExperimentLock(Path(experiment_dir).resolve(), command)
    holder = _read(lock.path)
    if not holder or lock._is_me(holder) or lock._stale(holder) is not None:
        return False
    print(f"hinas {command}: {lock._held_message(holder)}", file=sys.stderr, flush=True)
    return True


def hold(experiment_dir: Path, command: str) -> bool:
    """Take the experiment's lock for this process until :func:`release_all`. On refusal, print
    the one line naming the holder and return False."""
    key = Path(experiment_dir).resolve()
    if key in _held:
        return True
    lock = ExperimentLock(key, command)
    try:
        lock.acquire()
    except LockHeld as exc:
        print(f"hinas {command}: {exc}", file=sys.stderr, flush=True)
        return False
    if lock.taken_over:
        t = lock.taken_over
        print(f"hinas {command}: took over the lock of pid {t.get('pid', '?')} on {t.get('host', '?')} "
              f"(since {t.get('since', '?')}): {t['reason']}", flush=True)
    _held[key] = lock
    return True


def held():
    """The experiment folders this process holds."""
    return list(_held)


def release_all() -> None:
    while _held:
        _held.popitem()[1].release()
