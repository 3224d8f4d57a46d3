"""Write faults: a full disk (or any write error) while writing a study HDF5 fails with one line naming the
file and the errno, without SIGSEGV and without a `.part` left behind; `.part` files of killed writes are
removed by the next write of the same file."""

import errno
import os
import socket
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from osteoloc.io.atomic import atomic_path
from osteoloc.io.study_h5 import HipRecord, StudyWriteError, StudyWriter
from osteoloc.names import TARGETS

GROUPS = {t: list(range(5)) for t in TARGETS}
SIZE = 64


def _record(seed):
    rng = np.random.default_rng(seed)
    return HipRecord(image=rng.random((SIZE, SIZE), np.float32), grades=np.zeros(4, np.int8),
                     labels=np.zeros(4, np.int8), contour=np.zeros((80, 2), np.float32),
                     contour_manual=np.zeros((80, 2), np.float32), groups=np.zeros((4, 5, 2), np.float32),
                     valid=np.ones((4, 5), bool), subject="S", visit="V00", side="right", cohort="C", source="x.dcm",
                     source_spacing=(1.0, 1.0), spacing_from="given", crop_offset=(0.0, 0.0),
                     head_circle=(1.0, 1.0, 1.0), intensity=(0.0, 1.0))


def test_a_write_error_is_one_line_naming_the_file_and_errno(tmp_path, monkeypatch):
    def full(self, key, value):
        raise OSError(errno.ENOSPC, "Can't synchronously write data (file write failed: errno = 28)")

    monkeypatch.setattr(h5py.Dataset, "__setitem__", full)
    target = tmp_path / "study.h5"
    with pytest.raises(StudyWriteError) as caught:
        with StudyWriter(target, SIZE, 1.4, GROUPS, batch=4) as writer:
            for i in range(10):
                writer.append(_record(i))
    message = str(caught.value)
    assert caught.value.errno == errno.ENOSPC
    assert "\n" not in message and str(target) in message and "ENOSPC" in message, message
    assert list(tmp_path.iterdir()) == [], "the half-written temporary file was left behind"


WRITE_UNTIL_FULL = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_write_faults import GROUPS, SIZE, _record
    from osteoloc.io.study_h5 import StudyWriter, StudyWriteError
    try:
        with StudyWriter({target!r}, SIZE, 1.4, GROUPS) as writer:
            for i in range(400):  # 400 crops of 16 kB: more than the 1 MB file system holds
                writer.append(_record(i))
    except StudyWriteError as err:
        print(err)
        sys.exit(3)
""")


def test_a_full_disk_fails_cleanly_on_a_tiny_tmpfs(tmp_path):
    """The real thing, where mounting a 1 MB tmpfs is permitted (root without a container's restrictions):
    HDF5 used to end the process with SIGSEGV inside its cleanup."""
    mount = tmp_path / "full"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        code = WRITE_UNTIL_FULL.format(tests=os.path.dirname(__file__), target=str(mount / "study.h5"))
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert run.returncode == 3, f"exit {run.returncode} (-11 = SIGSEGV):\n{run.stderr[-3000:]}"
        line = run.stdout.strip()
        assert line.count("\n") == 0 and "study.h5" in line and "No space left on device" in line, line
        assert os.listdir(mount) == [], "a .part file was left on the full disk"
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_stale_part_files_of_killed_writes_are_removed_by_the_next_write(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname().split(".")[0]
    target = tmp_path / "study.h5"
    killed = tmp_path / f".study.h5.{host}.{gone.pid}.abcd1234.part"  # its writer has ended
    live = tmp_path / f".study.h5.{host}.{os.getpid()}.efgh5678.part"  # a writer still running: kept
    old = tmp_path / ".study.h5.a1b2c3d4.part"  # the naming before host and pid: removed once a day old
    other = tmp_path / ".other.h5.x.1.abcd.part"  # another file's: not ours to judge
    for part in (killed, live, old, other):
        part.write_bytes(b"half")
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (day_ago, day_ago))
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, live.name, other.name])
