"""Server paths stay inside the allowed roots; uploads unpack safely or not at all."""
from __future__ import annotations

import os
import zipfile

import pytest

from explorer.inputs.roots import PathRefused, allowed_folder, inside_roots, unpack_uploads


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
        z.writestr("cats/1.txt", b"a cat on a mat")   # captions travel with their images
        z.writestr("captions.csv", b"path,caption")
        z.writestr("run.sh", b"x")
        z.writestr("__MACOSX/cats/._1.png", b"x")
    loose = tmp_path / "loose.png"
    loose.write_bytes(b"loose")
    dest, notes = unpack_uploads([str(archive), str(loose)], tmp_path / "out")
    found = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert found == ["captions.csv", "cats/1.png", "cats/1.txt", "dogs/2.jpg", "loose.png"]
    assert not (tmp_path / "evil.png").exists()
    assert "5 file(s)" in notes[0] and notes[1].startswith(
        "4 entries refused: ../evil.png ('..' in path), /abs.png (absolute path)")


def test_upload_over_the_caps_is_refused_and_leaves_nothing(tmp_path):
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(5):
            z.writestr(f"{i}.png", b"x" * 100)
    with pytest.raises(PathRefused, match="more than 3 files"):
        unpack_uploads([str(archive)], tmp_path / "out", max_files=3)
    assert not (tmp_path / "out").exists()
    with pytest.raises(PathRefused, match="expands to more than 250 bytes"):
        unpack_uploads([str(archive)], tmp_path / "out2", max_bytes=250)
    assert not (tmp_path / "out2").exists()
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(PathRefused, match="bad.zip is not a zip file or is damaged"):
        unpack_uploads([str(bad)], tmp_path / "out3")


def test_upload_area_unpacks_each_set_of_files_once_and_prunes_old_ones(tmp_path):
    import os
    import time

    from explorer.inputs.roots import UploadArea

    area = UploadArea(tmp_path / "area")
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    one.write_bytes(b"1")
    two.write_bytes(b"2")
    first, notes = area.unpack([str(one), str(two)])
    assert sorted(p.name for p in first.iterdir()) == ["one.png", "two.png"] and "2 file(s)" in notes[0]
    assert area.unpack([str(two), str(one)])[0] == first          # the same files again: the same folder
    other, _ = area.unpack([str(one)])
    assert other != first and area.contains(other / "one.png") and not area.contains(one)
    day_ago = time.time() - 25 * 3600
    os.utime(first, (day_ago, day_ago))
    (tmp_path / "area" / ".partial-stale").mkdir()
    os.utime(tmp_path / "area" / ".partial-stale", (day_ago, day_ago))
    third = tmp_path / "three.png"
    third.write_bytes(b"3")
    area.unpack([str(third)])                                     # a new upload prunes what expired
    assert not first.exists() and other.exists() and not (tmp_path / "area" / ".partial-stale").exists()
    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w") as z:
        for i in range(5):
            z.writestr(f"{i}.png", b"x")
    with pytest.raises(PathRefused, match="more than 3 files"):
        area.unpack([str(big)], max_files=3)
    assert sorted(p.name for p in (tmp_path / "area").iterdir()
                  if p.name.startswith(".")) == []  # nothing half-made


def test_upload_area_tells_apart_different_files_with_the_same_name(tmp_path):
    from explorer.inputs.roots import UploadArea

    area = UploadArea(tmp_path / "area")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = tmp_path / "a" / "photo.png", tmp_path / "b" / "photo.png"  # as gradio stores two uploads
    first.write_bytes(b"first")
    second.write_bytes(b"the second upload")
    one, _ = area.unpack([str(first)])
    two, _ = area.unpack([str(second)])
    assert one != two and (two / "photo.png").read_bytes() == b"the second upload"
    second.write_bytes(b"new content at the same path")
    os.utime(second, ns=(10**18, 10**18))
    three, _ = area.unpack([str(second)])
    assert three != two and (three / "photo.png").read_bytes() == b"new content at the same path"


def test_upload_area_keeps_folders_used_within_keep_hours(tmp_path):
    import time

    from explorer.inputs.roots import UploadArea

    area = UploadArea(tmp_path / "area", keep_hours=24)
    files = []
    for name in ("recent.png", "reused.png", "new.png"):
        (tmp_path / name).write_bytes(name.encode())
        files.append(str(tmp_path / name))
    recent, _ = area.unpack([files[0]])
    reused, _ = area.unpack([files[1]])
    hours_ago = lambda h: (time.time() - h * 3600,) * 2  # noqa: E731
    os.utime(recent, hours_ago(2))    # used two hours ago: well within a day
    os.utime(reused, hours_ago(25))   # unpacked yesterday...
    assert area.unpack([files[1]])[0] == reused  # ...and uploaded again now: in use, not expired
    area.unpack([files[2]])                      # a new upload prunes what expired
    assert recent.exists() and reused.exists()
