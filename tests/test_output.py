"""edgeq.output.writing: the temp folder beside an output, its permissions, its errors naming the
output, and the removal of killed writers' leftovers."""
import errno
import os
import subprocess
import sys

import pytest

from edgeq import output
from edgeq.errors import EdgeqError


@pytest.mark.parametrize("mask,mode", [(0o022, 0o755), (0o077, 0o700), (0o002, 0o775)])
def test_output_folder_follows_the_umask(mask, mode, tmp_path):
    old = os.umask(mask)
    try:
        with output.writing(tmp_path / "b") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "b").stat().st_mode & 0o777 == mode
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_output_made_meanwhile_is_named_not_the_temp_folder(tmp_path):
    out = tmp_path / "b"
    with pytest.raises(EdgeqError) as e:
        with output.writing(out) as tmp:
            (tmp / "f").write_text("x")
            out.mkdir()
            (out / "other").write_text("another build's")
    assert str(e.value) == f"{out}: appeared while this wrote it (another process?); remove it " \
        "or choose another -o"
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


@pytest.mark.parametrize("name,want", [
    (None, "{out}: No space left on device; free some space or choose another -o"),
    ("{tmp}/model.onnx", "{out}: No space left on device (writing model.onnx); free some space "
                         "or choose another -o")])
def test_full_disk_names_the_output(name, want, tmp_path):
    out = tmp_path / "b"
    with pytest.raises(EdgeqError) as e:
        with output.writing(out) as tmp:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC),
                          *([name.format(tmp=tmp)] if name else []))
    assert str(e.value) == want.format(out=out)
    assert not list(tmp_path.iterdir())


def test_only_dead_writers_leftovers_of_this_output_go(tmp_path, capsys):
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                       capture_output=True, text=True)
    dead = int(p.stdout)
    names = {f".b.{dead}.abcd_123": False,  # removed
             f".b.{os.getppid()}.abcdefgh": True,  # a live writer's
             f".b.{os.getpid()}.abcdefgh": True,  # this process's own
             f".b.1.{dead}.abcdefgh": True,  # output b.1's
             f".b.{dead}.abc": True,  # not a name writing() makes
             f".c.{dead}.abcdefgh": True}  # another output's
    for n in names:
        (tmp_path / n).mkdir()
    (tmp_path / f".b.{dead}.linkxxxx").symlink_to(tmp_path / f".c.{dead}.abcdefgh")
    output.remove_stale(tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [n for n, kept in names.items() if kept] + [f".b.{dead}.linkxxxx"])
    assert capsys.readouterr().err == f"edgeq: removed {tmp_path}/.b.{dead}.abcd_123, the temp " \
        f"folder of a write of {tmp_path / 'b'} that was killed (pid {dead})\n"
