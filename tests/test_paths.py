"""Server paths stay inside the allowed roots; uploads unpack safely or not at all."""
from __future__ import annotations

import os
import zipfile

import pytest

from explorer.paths import PathRefused, allowed_folder, inside_roots, unpack_uploads


@pytest.fixture
def roots(tmp_path):
    root = tmp_path / "photos"
    (root / "trip").mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    os.symlink(outside, root / "escape")
    os.symlink(root / "trip", root / "trip-link")
    return root, outside


def test_folder_inside_a_root_is_accepted_including_links_that_stay_inside(roots):
    root, _ = roots
    assert allowed_folder(str(root / "trip"), (root,)) == (root / "trip").resolve()
    assert allowed_folder(str(root / "trip-link"), (root,)) == (root / "trip").resolve()
    assert allowed_folder(str(root), (root,)) == root.resolve()


@pytest.mark.parametrize("typed, reason", [
    ("{root}/../secret", "'..'"),
    ("{root}/trip/..", "'..'"),
    ("{outside}", "outside the folders"),
    ("{root}/escape", "outside the folders"),
    ("/etc", "outside the folders"),
    ("relative/path", "absolute path"),
    ("{root}/missing", "no such folder"),
    ("   ", "type the path"),
])
def test_refused_paths(roots, typed, reason):
    root, outside = roots
    with pytest.raises(PathRefused, match=reason):
        allowed_folder(typed.format(root=root, outside=outside), (root,))


def test_hosted_mode_refuses_every_server_path(roots):
    root, _ = roots
    with pytest.raises(PathRefused, match="hosted demo"):
        allowed_folder(str(root), (root,), hosted=True)


def test_inside_roots_resolves_links(roots):
    root, outside = roots
    assert inside_roots(root / "trip", (root,))
    assert not inside_roots(root / "escape" / "x.png", (root,))


def test_zip_upload_keeps_folders_and_skips_unsafe_members(tmp_path):
    archive = tmp_path / "labelled.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("cats/1.png", b"png-bytes")
        z.writestr("dogs/2.jpg", b"jpg-bytes")
        z.writestr("../evil.png", b"x")
        z.writestr("/abs.png", b"x")
        z.writestr("notes.txt", b"x")
        z.writestr("__MACOSX/cats/._1.png", b"x")
    loose = tmp_path / "loose.png"
    loose.write_bytes(b"loose")
    dest, notes = unpack_uploads([str(archive), str(loose)], tmp_path / "out")
    found = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert found == ["cats/1.png", "dogs/2.jpg", "loose.png"]
    assert not (tmp_path / "evil.png").exists()
    assert "3 image file(s)" in notes[0] and "4 non-image or unsafe" in notes[1]


def test_upload_over_the_caps_is_refused_and_leaves_nothing(tmp_path):
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(5):
            z.writestr(f"{i}.png", b"x" * 100)
    with pytest.raises(PathRefused, match="more than 3 images"):
        unpack_uploads([str(archive)], tmp_path / "out", max_files=3)
    assert not (tmp_path / "out").exists()
    with pytest.raises(PathRefused, match="larger than"):
        unpack_uploads([str(archive)], tmp_path / "out2", max_bytes=250)
    assert not (tmp_path / "out2").exists()
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(PathRefused, match="could not unpack"):
        unpack_uploads([str(bad)], tmp_path / "out3")


def test_old_upload_folders_are_pruned_when_a_new_one_is_made(tmp_path):
    import os
    import time

    from explorer.paths import fresh_upload_dir

    old, recent, other = tmp_path / "upload-old", tmp_path / "upload-recent", tmp_path / "keep-me"
    for folder in (old, recent, other):
        folder.mkdir()
        (folder / "a.png").write_bytes(b"x")
    day_ago = time.time() - 25 * 3600
    os.utime(old, (day_ago, day_ago))
    os.utime(other, (day_ago, day_ago))
    new = fresh_upload_dir(tmp_path)
    assert new.is_dir() and new.name.startswith("upload-") and not any(new.iterdir())
    assert not old.exists() and recent.exists() and other.exists()
