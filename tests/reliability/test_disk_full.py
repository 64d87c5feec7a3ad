"""A full disk (issue #16): every write that a later run trusts fails whole, on a real full file system.

A small tmpfs is mounted (the tests are skipped, with the reason, where mounting is not
permitted) and filled up with a ballast file; then each writer of test_atomic_writes.py's
inventory (genotype.json, model.pt, search summary, evaluation Parquet, image cache) and the
report and MLflow artifact writers try to replace a complete earlier version. Each must fail with
ENOSPC naming the file it was writing, keep the earlier version complete, leave no temporary
behind, and succeed once space is freed. (A whole `hinas run` that hits the full disk and
resumes is in test_interrupts.py.)
"""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)


class Tmpfs:
    """A size-limited tmpfs at ``path``; :meth:`fill` leaves it with no free block."""

    def __init__(self, path: Path, size: str):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a size-limited tmpfs here ({done.stderr.strip() or done.returncode}); "
                        "the full-disk tests need root or CAP_SYS_ADMIN")
        self.ballast = path / f".ballast-{uuid.uuid4().hex}"

    def fill(self) -> None:
        fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for size in (1 << 20, 4096, 1):  # down to the last byte of the last block
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
        finally:
            os.close(fd)
        assert os.statvfs(self.path).f_bavail == 0

    def free(self) -> None:
        self.ballast.unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    disk = Tmpfs(tmp_path / "disk", "64m")
    yield disk
    disk.unmount()


def _report(path: Path, v: int):
    from hinas_core.fsutil import atomic_file

    with atomic_file(path) as tmp:
        tmp.write_text(f"# report v{v}\n" + "| row |\n" * (20_000 * (v > 0)))


def _read_report(path: Path):
    return int(path.read_text().splitlines()[0].split("v")[1])


def test_every_trusted_write_on_a_full_disk_fails_whole_and_keeps_the_previous_file(small_disk, make):
    atomic = make.sibling("test_atomic_writes")  # its inventory of trusted writers
    writers = atomic.Writers(small_disk.path, make)
    writers.spec = {"kind": "dncnn", "depth": 3, "width": 16}  # the inventory's files, small enough for the tmpfs
    kinds = {**{k: (getattr(writers, k), getattr(writers, f"read_{k}")) for k in atomic.TARGETS},
             "report_md": (_report, _read_report)}
    names = {**atomic.TARGETS, "report_md": "report.md"}
    for kind, (write, read) in kinds.items():
        folder = small_disk.path / "runs" / kind
        path = folder / names[kind]
        if kind in ("genotype_json", "search_summary_json"):
            _small(kind, atomic, writers, path)
        else:
            write(path, 0)
        assert read(path) == 0
        before = path.read_bytes()
        small_disk.fill()
        with pytest.raises(OSError) as caught:
            write(path, 1)
        # ENOSPC, naming the file being written (the search summary writes its .md beside the .json first)
        assert caught.value.errno == errno.ENOSPC and Path(caught.value.filename).parent == folder, (kind, caught.value)
        assert not Path(caught.value.filename).name.startswith("."), caught.value
        assert path.read_bytes() == before and read(path) == 0, kind
        assert not list(folder.glob(".*.tmp")), (kind, list(folder.iterdir()))
        small_disk.free()
        write(path, 2)
        assert read(path) == 2, kind
        shutil.rmtree(folder)  # room for the next writer's files


def _small(kind, atomic, writers, path):
    """Version 0 of a writer whose own test makes big files (to be slow to write), made small."""
    if kind == "genotype_json":
        atomic._genotype(0).save(path)
    else:
        writers.search_summary_json(path, 0)


def test_an_mlflow_artifact_on_a_full_disk_is_one_tracking_error(small_disk, tmp_path):
    from hinas.pipeline.mlflow_tracking import Tracker, TrackingError

    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "full", artifact_location=str(small_disk.path / "art"))
    report = tmp_path / "report.md"
    report.write_text("x" * 100_000)
    with pytest.raises(TrackingError) as caught:
        with tracker.run("pipeline", "pipeline:x") as run_id:
            tracker.log_artifact(run_id, report)  # room for it
            small_disk.fill()
            tracker.log_artifact(run_id, report, "again")
    (line,) = str(caught.value).splitlines()
    assert "log_artifact failed" in line and "No space left on device" in line
    status = tracker.client.get_run(run_id).info.status
    assert status == "FAILED"  # the store itself (SQLite, elsewhere) still answers: the run is closed


def test_tune_state_cut_short_by_a_full_disk_is_not_restored(tmp_path):
    """Ray Tune writes its experiment and searcher state in place: a full disk can leave them
    cut short, and `Tuner.restore` then crashes. Such a stage is started anew instead (seen in a
    real run: a search whose disk filled mid-epoch, resumed once space was freed)."""
    import json
    import pickle

    from hinas.pipeline.retries import tune_state_whole

    state = json.dumps({"trial_data": [["x" * 100, "y" * 100]], "runner_data": {"_iteration": 7}})
    searcher = pickle.dumps({"_iterators": [], "_trial_generator": list(range(100))})
    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text(state)
    (tmp_path / "basic-variant-state-2026-01-01_00-00-00.json").write_bytes(searcher)
    (tmp_path / ".1a2b-tmp-basic-variant-state-2026-01-01_00-00-00.json").write_bytes(searcher[:9])  # Tune's temporary
    (tmp_path / "experiment_state-2025-01-01_00-00-00.json").write_text(state[:5])  # older: not read by a restore
    assert tune_state_whole(tmp_path)
    (tmp_path / "basic-variant-state-2026-01-01_00-00-00.json").write_bytes(searcher[:-3])
    assert not tune_state_whole(tmp_path)
    (tmp_path / "basic-variant-state-2026-01-01_00-00-00.json").write_bytes(searcher)
    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text(state[:60])
    assert not tune_state_whole(tmp_path)
