"""The ``inside-gpt2`` command: copies without overwriting, refuses what it must, says what it did."""

from __future__ import annotations

import pytest

from course import cli


def test_start_copies_the_chapters_once_and_keeps_a_students_copy(tmp_path, capsys):
    assert cli.main(["start", str(tmp_path / "work"), "--no-launch"]) == 0
    copied = sorted(p.name for p in (tmp_path / "work").iterdir())
    assert copied == sorted(p.name for p in cli.chapter_notebooks()) and len(copied) >= 7
    mine = tmp_path / "work" / copied[0]
    mine.write_text("my work")
    (tmp_path / "work" / copied[1]).unlink()
    assert cli.main(["start", str(tmp_path / "work"), "--no-launch", "--", "--no-browser"]) == 0
    out = capsys.readouterr().out
    assert mine.read_text() == "my work", "never overwritten"
    assert f"copied 1: {copied[1]}" in out and f"kept {len(copied) - 1}" in out
    assert "jupyter lab" in out and "--no-browser" in out and out.rstrip().endswith("ch1_residual_stream.ipynb")


@pytest.mark.parametrize("where", ["a_file", "installed"])
def test_start_refuses_a_file_or_the_installed_notebooks_and_says_what_to_do(tmp_path, capsys, where):
    target = tmp_path / "notes.txt" if where == "a_file" else cli.NOTEBOOKS
    if where == "a_file":
        target.write_text("keep me")
    before = sorted(p.stat().st_mtime_ns for p in cli.chapter_notebooks())
    assert cli.main(["start", str(target), "--no-launch"]) == 2
    err = capsys.readouterr().err
    assert "inside-gpt2 start" in err and ("is a file" in err or "installed originals" in err)
    assert sorted(p.stat().st_mtime_ns for p in cli.chapter_notebooks()) == before
    if where == "a_file":
        assert target.read_text() == "keep me"


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(c in out for c in ("start", "notebooks", "info"))
    assert cli.main([]) == 0 and "start" in capsys.readouterr().out
    assert cli.main(["notebooks"]) == 0 and capsys.readouterr().out.strip() == str(cli.NOTEBOOKS)
