"""Expanding the inputs of ``run_app.py process``: files, folders, glob patterns and list files."""
from __future__ import annotations

from pathlib import Path

import pytest

from app.core import process
from app.core.exit_codes import UsageError
from app.core.inputs import expand_inputs


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in ("a/one.mp4", "a/two.mov", "a/notes.txt", "a/two.annotated.mp4", "a/deep/three.mp4", "b/four.png"):
        touch(tmp_path / name)
    return tmp_path


def test_a_folder_stands_for_its_videos_and_images_in_name_order(tree):
    assert expand_inputs([tree / "a"]) == [tree / "a/one.mp4", tree / "a/two.mov"]


def test_a_pattern_expands_in_name_order_and_double_star_reaches_subfolders(tree):
    assert expand_inputs([str(tree / "a/*.mp4")]) == [tree / "a/one.mp4", tree / "a/two.annotated.mp4"]
    assert expand_inputs([str(tree / "**/*.mp4")]) == [
        tree / "a/deep/three.mp4", tree / "a/one.mp4", tree / "a/two.annotated.mp4"]


def test_a_list_file_names_inputs_relative_to_itself_skipping_comments_and_blank_lines(tree):
    listing = tree / "lists" / "inputs.txt"
    listing.parent.mkdir()
    listing.write_text(f"# the batch\n../a/one.mp4\n\n{tree / 'b'}\n../a/deep/*.mp4\n")
    assert expand_inputs([], [listing]) == [tree / "lists/../a/one.mp4", tree / "b/four.png",
                                            tree / "lists/../a/deep/three.mp4"]


def test_the_same_file_reached_twice_is_processed_once(tree):
    assert expand_inputs([tree / "a/one.mp4", str(tree / "a/o*.mp4"), tree / "a"]) == [
        tree / "a/one.mp4", tree / "a/two.mov"]


@pytest.mark.parametrize("argument, says", [
    ("absent.mp4", "absent.mp4: no such file"),
    ("*.mkv", "*.mkv: a pattern that matches no file"),
    ("b_empty", "b_empty: a folder without videos or images"),
])
def test_a_missing_file_an_empty_pattern_or_folder_is_a_usage_error_naming_it(tree, argument, says):
    (tree / "b_empty").mkdir()
    with pytest.raises(UsageError) as raised:
        expand_inputs([str(tree / argument)])
    assert str(raised.value).startswith(f"{tree}/{says}")


def test_no_input_and_an_empty_list_file_are_usage_errors(tree):
    with pytest.raises(UsageError, match="no input"):
        expand_inputs([])
    empty = tree / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(UsageError, match="names no input"):
        expand_inputs([], [empty])


def test_the_command_takes_a_list_file_and_refuses_an_input_named_like_the_batch_index(tree):
    listing = tree / "list.txt"
    listing.write_text("a/one.mp4\nb/four.png\n")
    options = process.parse_options(["--from-list", str(listing), "--out", str(tree / "out")])
    assert options.videos == [tree / "a/one.mp4", tree / "b/four.png"]
    touch(tree / "process_batch.mp4")
    with pytest.raises(UsageError, match="process_batch"):
        process.parse_options([str(tree / "process_batch.mp4"), "--out", str(tree / "out")])
