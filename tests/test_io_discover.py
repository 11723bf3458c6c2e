"""discover_inputs / output_path / assign_outputs: files, folders, globs, order, errors, mirroring."""

from __future__ import annotations

from pathlib import Path

import pytest

from refsd_trt.io import InputErrorKind, MediaKind, OutputError, assign_outputs, discover_inputs, output_path


@pytest.fixture
def tree(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in [
        "photos/b.jpg",
        "photos/a.JPEG",
        "photos/notes.txt",
        "photos/.hidden.jpg",
        "photos/.x.jpg.tmp-99-0123456789ab.jpg",
        "photos/.git/c.jpg",
        "photos/sub/c.png",
        "photos/sub/deep/clip.MOV",
        "photos/sub/deep/e.webp",
        "other/a.jpg",
        "other/z.tif",
    ]:
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_bytes(b"x")
    return tmp_path


def _names(discovery) -> list[str]:
    return [item.path.as_posix() for item in discovery.items]


def test_folder_is_walked_in_sorted_order_skipping_hidden_and_other_types(tree):
    found = discover_inputs(["photos"])
    assert _names(found) == [
        "photos/a.JPEG",
        "photos/b.jpg",
        "photos/sub/c.png",
        "photos/sub/deep/clip.MOV",
        "photos/sub/deep/e.webp",
    ]
    assert [i.kind for i in found.items][3] is MediaKind.VIDEO
    assert found.ignored == [Path("photos/notes.txt")] and found.errors == []
    assert _names(discover_inputs(["photos"], recursive=False)) == ["photos/a.JPEG", "photos/b.jpg"]


def test_arguments_keep_their_order_duplicates_once_missing_reported_rest_goes_on(tree):
    found = discover_inputs(
        ["other/z.tif", "nope/", "photos/sub", "photos/sub/c.png", "photos/*.txt", "other/a.jpg"]
    )
    assert _names(found) == [
        "other/z.tif",
        "photos/sub/c.png",
        "photos/sub/deep/clip.MOV",
        "photos/sub/deep/e.webp",
        "other/a.jpg",
    ]
    assert [str(e) for e in found.errors] == [
        "nope: no such file or folder",
    ]
    assert found.ignored == [Path("photos/notes.txt")]
    unsupported = discover_inputs(["photos/notes.txt", "photos/*.gif"])
    assert [str(e) for e in unsupported.errors] == [
        "photos/notes.txt: unsupported file type '.txt'",
        "photos/*.gif: no files match this pattern",
    ]
    assert [e.kind for e in unsupported.errors] == [InputErrorKind.UNSUPPORTED, InputErrorKind.MISSING]


def test_globs_expand_and_mirror_below_their_static_prefix(tree, tmp_path):
    found = discover_inputs(["photos/**/*.png", "photos/sub/deep/*"])
    assert _names(found) == ["photos/sub/c.png", "photos/sub/deep/clip.MOV", "photos/sub/deep/e.webp"]
    out = tmp_path / "out"
    assert [p.relative_to(out).as_posix() for _item, p in assign_outputs(found.items, out)] == [
        "sub/c.png",
        "clip.mp4",
        "e.webp",
    ]


def test_output_paths_mirror_folders_and_videos_become_mp4(tree, tmp_path):
    out = tmp_path / "anon"
    pairs = assign_outputs(discover_inputs(["photos", "other/z.tif"]).items, out)
    assert [p.relative_to(out).as_posix() for _i, p in pairs] == [
        "a.JPEG",
        "b.jpg",
        "sub/c.png",
        "sub/deep/clip.mp4",
        "sub/deep/e.webp",
        "z.tif",
    ]


def test_colliding_outputs_are_refused_naming_the_inputs(tree, tmp_path):
    distinct = discover_inputs(["other/a.jpg", "photos/b.jpg", "photos/sub/deep/e.webp"]).items
    assert len(assign_outputs(distinct, tmp_path / "o")) == 3
    Path("photos/a.jpg").write_bytes(b"x")
    same_name = discover_inputs(["other/a.jpg", "photos/a.jpg"]).items
    with pytest.raises(
        OutputError, match=r"o/a\.jpg: 2 inputs would be written here \(other/a\.jpg, photos/a\.jpg\)"
    ):
        assign_outputs(same_name, tmp_path / "o")


def test_an_input_is_never_its_own_output(tree):
    with pytest.raises(OutputError, match="output path is the input itself"):
        output_path(discover_inputs(["photos/b.jpg"]).items[0], "photos")


def test_output_folder_inside_the_input_folder_is_not_read_back(tree):
    Path("photos/anon").mkdir()
    Path("photos/anon/b.jpg").write_bytes(b"x")
    assert "photos/anon/b.jpg" not in _names(discover_inputs(["photos"], exclude=["photos/anon"]))
    assert "photos/anon/b.jpg" in _names(discover_inputs(["photos"]))
