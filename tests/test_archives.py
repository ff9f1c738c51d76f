"""Uploaded zips unpack within their limits, entry by entry: bombs are refused while they are read,
however their headers lie; unsafe or unusable names are skipped with their reason; what is refused
leaves nothing behind."""
from __future__ import annotations

import io
import os
import stat
import struct
import time
import tracemalloc
import warnings
import zipfile

import pytest

from explorer.inputs.archives import ArchiveLimits
from explorer.inputs.roots import PathRefused, unpack_uploads

MiB = 2**20
ROOMY = ArchiveLimits(max_entry_bytes=100 * MiB)   # lets a 60 MiB entry reach the ratio check


def zeros_zip(path, size, name="photo.png", extra=()):
    """A zip holding `size` bytes of zeros (about 1000:1 deflated), written without holding them."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for extra_name, data in extra:
            z.writestr(extra_name, data)
        with z.open(name, "w") as out:
            for _ in range(size // MiB):
                out.write(bytes(MiB))
    return path


def patch_entry(path, name, **fields):
    """Rewrite fields of `name`'s local and central headers in place, as a forger would."""
    where = {
        "flags": (6, 8, "<H"), "method": (8, 10, "<H"), "compress_size": (18, 20, "<L"),
        "file_size": (22, 24, "<L")
    }
    data = bytearray(path.read_bytes())
    local, central = header_of(data, name, b"PK\x03\x04", 26), header_of(data, name, b"PK\x01\x02", 28)
    for field_name, value in fields.items():
        in_local, in_central, fmt = where[field_name]
        struct.pack_into(fmt, data, local + in_local, value)
        struct.pack_into(fmt, data, central + in_central, value)
    path.write_bytes(bytes(data))


def header_of(data, name, signature, name_length_at):
    encoded, at = name.encode(), -1
    while True:
        at = data.index(signature, at + 1)
        start = at + name_length_at + 4 if signature == b"PK\x03\x04" else at + 46
        if struct.unpack_from("<H", data, at + name_length_at)[0] == len(encoded) and \
                data[start:start + len(encoded)] == encoded:
            return at


def listing_zip(path, count, declared=None):
    """A valid zip of `count` empty stored entries (zip64 end records, as past 65,535 entries),
    written directly: zipfile takes seconds for 100k. Its end records may declare another count."""
    declared = count if declared is None else declared
    local, central = [], []
    offset = 0
    for i in range(count):
        name = f"{i}.png".encode()
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 33, 0, 0, 0,
                                   len(name), 0, 0, 0, 0, 0, offset) + name)
        header = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 33, 0, 0, 0, len(name), 0) + name
        local.append(header)
        offset += len(header)
    listing = b"".join(central)
    end64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, declared, declared, len(listing),
                        offset)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, offset + len(listing), 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, len(listing), offset, 0)
    path.write_bytes(b"".join(local) + listing + end64 + locator + end)
    return path


def files_in(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def opened(monkeypatch):
    """The names of the zip entries opened for reading."""
    names, real_open = [], zipfile.ZipFile.open

    def spy(self, info, mode="r", *args, **kwargs):
        if mode == "r":
            names.append(getattr(info, "filename", info))
        return real_open(self, info, mode, *args, **kwargs)
    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    return names


class Gushing(io.RawIOBase):
    """A zip entry reader that trusts no header: `size` zeros, whatever the entry declares."""
    def __init__(self, size):
        self.left = size

    def readable(self):
        return True

    def readinto(self, buffer):
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """60 MiB of zeros in a ~60 KB zip."""
    return zeros_zip(tmp_path_factory.mktemp("bomb") / "bomb.zip", 60 * MiB)


def test_a_zip_bomb_declaring_its_size_is_refused_unread(bomb, tmp_path, opened):
    assert bomb.stat().st_size < MiB
    started = time.perf_counter()
    with pytest.raises(
            PathRefused,
            match="zip entry photo.png is compressed more than 100:1 — refused as a possible zip bomb"):
        unpack_uploads([str(bomb)], tmp_path / "out")
    print(f"\nbomb refused in {time.perf_counter() - started:.3f}s")
    assert opened == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("limits, refused", [
    (ArchiveLimits(), "zip entry photo.png is compressed more than 100:1"),
    (ArchiveLimits(max_bytes=4 * MiB, max_ratio=1e9), "the zip expands to more than 4 MiB"),
    (ArchiveLimits(max_entry_bytes=4 * MiB, max_ratio=1e9), None),
])
def test_the_bytes_written_are_counted_not_the_sizes_declared(tmp_path, monkeypatch, limits, refused):
    archive = tmp_path / "small.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("photo.png", b"tiny")
    # zipfile itself stops an entry at its declared size; were it ever not to, the counting still holds.
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda *a, **k: io.BufferedReader(Gushing(40 * MiB)))
    if refused:
        with pytest.raises(PathRefused, match=refused):
            unpack_uploads([str(archive)], tmp_path / "out", limits=limits)
        assert not (tmp_path / "out").exists()
    else:
        dest, notes = unpack_uploads([str(archive)], tmp_path / "out", limits=limits)
        assert files_in(dest) == [] and notes[1] == "1 entry refused: photo.png (larger than 4 MiB)"


def test_a_header_understating_the_compressed_size_does_not_hide_a_bomb(tmp_path):
    forged = zeros_zip(tmp_path / "forged.zip", 30 * MiB)
    patch_entry(forged, "photo.png", compress_size=30 * MiB)   # claims 1:1: only the bytes written tell
    with pytest.raises(PathRefused, match="compressed more than 100:1"):
        unpack_uploads([str(forged)], tmp_path / "out", limits=ROOMY)
    assert not (tmp_path / "out").exists()


def test_a_header_understating_the_size_is_refused_as_damaged_and_leaves_nothing(tmp_path):
    forged = zeros_zip(tmp_path / "forged.zip", 30 * MiB, extra=[("good.png", b"fine")])
    patch_entry(forged, "photo.png", file_size=1000)           # declares small, holds large
    started = time.perf_counter()
    with pytest.raises(PathRefused, match=r"forged.zip is damaged \(Bad CRC-32"):
        unpack_uploads([str(forged)], tmp_path / "out", limits=ROOMY)
    assert time.perf_counter() - started < 2 and not (tmp_path / "out").exists()  # good.png went too


def test_the_total_size_is_limited(tmp_path, opened):
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(6):
            z.writestr(f"{i}.png", os.urandom(MiB))
    with pytest.raises(PathRefused, match="the zip expands to more than 5 MiB"):
        unpack_uploads([str(archive)], tmp_path / "out", limits=ArchiveLimits(max_bytes=5 * MiB))
    assert opened == [] and not (tmp_path / "out").exists()     # refused on the declared sizes, unread
    assert len(
        files_in(unpack_uploads([str(archive)], tmp_path / "ok",
                                limits=ArchiveLimits(max_bytes=6 * MiB))[0])) == 6


def test_a_file_over_the_per_file_limit_is_skipped_with_its_reason(tmp_path, opened):
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("huge.png", os.urandom(3 * MiB))
        z.writestr("small.png", b"small")
    loose = tmp_path / "loose.png"
    loose.write_bytes(os.urandom(2 * MiB))
    dest, notes = unpack_uploads([str(archive), str(loose)], tmp_path / "out",
                                 limits=ArchiveLimits(max_entry_bytes=MiB))
    assert files_in(dest) == ["small.png"] and opened == ["small.png"]
    assert notes[1] == "2 entries refused: huge.png (larger than 1 MiB), loose.png (larger than 1 MiB)"


def test_small_files_that_compress_very_well_still_pass(tmp_path):
    """Real captions compress well (here ~6:1), never like a bomb (a line repeated 40,000 times is
    ~1000:1, and refused: tests/test_quota.py)."""
    archive = tmp_path / "captions.zip"
    lines = (f"img{i:06d}.png,a photo of a {('red', 'green', 'blue')[i % 3]} {('cat', 'dog')[i % 2]} "
             f"number {i * 7919 % 100_003}\n" for i in range(20_000))
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("captions.csv", "path,caption\n" + "".join(lines))  # ~900 KB
        z.writestr("tiny.png", bytes(60_000))                           # ~1000:1, within the allowance
    dest, _ = unpack_uploads([str(archive)], tmp_path / "out")
    assert files_in(dest) == ["captions.csv", "tiny.png"]


def test_memory_stays_low_while_a_large_entry_is_unpacked(bomb, tmp_path):
    tracemalloc.start()
    try:
        started = time.perf_counter()
        dest, _ = unpack_uploads([str(bomb)], tmp_path / "out",
                                 limits=ArchiveLimits(max_entry_bytes=100 * MiB, max_ratio=1e9))
        seconds, (_, peak) = time.perf_counter() - started, tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"\n60 MiB entry unpacked in {seconds:.2f}s (under tracemalloc), "
          f"peak Python memory {peak / MiB:.1f} MiB")
    assert (dest / "photo.png").stat().st_size == 60 * MiB
    assert peak < 8 * MiB


def test_a_zip_listing_100k_entries_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    archive = listing_zip(tmp_path / "many.zip", 100_000)
    assert len(zipfile.ZipFile(archive).infolist()) == 100_000   # a real zip
    monkeypatch.setattr(zipfile, "ZipFile", lambda *a, **k: pytest.fail("the listing was parsed"))
    started = time.perf_counter()
    with pytest.raises(PathRefused, match="the zip has more than 5,000 files"):
        unpack_uploads([str(archive)], tmp_path / "out")
    seconds = time.perf_counter() - started
    print(f"\n100k-entry zip refused in {seconds * 1000:.1f} ms")
    assert seconds < 1 and not (tmp_path / "out").exists()


def test_a_zip_lying_about_its_entry_count_is_refused_by_the_size_of_its_listing(tmp_path, monkeypatch):
    archive = listing_zip(tmp_path / "liar.zip", 100_000, declared=3)   # zipfile trusts the listing's size
    monkeypatch.setattr(zipfile, "ZipFile", lambda *a, **k: pytest.fail("the listing was parsed"))
    with pytest.raises(PathRefused, match="the zip has more than 5,000 files"):
        unpack_uploads([str(archive)], tmp_path / "out")


def test_a_mac_zip_with_folders_and_twins_of_every_file_is_not_refused_for_its_listing(tmp_path):
    archive = tmp_path / "mac.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for folder in ("cats/", "dogs/", "__MACOSX/", "__MACOSX/cats/", "__MACOSX/dogs/"):
            z.writestr(folder, b"")
        for i in range(100):
            z.writestr(f"{'cats' if i % 2 else 'dogs'}/{i}.png", b"x")
            z.writestr(f"__MACOSX/{'cats' if i % 2 else 'dogs'}/._{i}.png", b"x")
    dest, notes = unpack_uploads([str(archive)], tmp_path / "out", limits=ArchiveLimits(max_files=100))
    assert len(files_in(dest)) == 100 and "100 entries refused" in notes[1]
    with pytest.raises(PathRefused, match="more than 99 files"):
        unpack_uploads([str(archive)], tmp_path / "out2", limits=ArchiveLimits(max_files=99))


def test_zip_slip_never_writes_outside_dest(tmp_path):
    archive = tmp_path / "slip.zip"
    link = zipfile.ZipInfo("link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(archive, "w") as z:
        for name in ("../evil.png", "/abs.png", "C:\\x.png", "C:/y.png", "a/../../evil2.png",
                     "a\\..\\..\\evil3.png"):
            z.writestr(name, b"x")
        z.writestr(link, "../../outside.png")
        z.writestr("ok.png", b"ok")
    outer = tmp_path / "outer"
    outer.mkdir()
    dest, notes = unpack_uploads([str(archive)], outer / "dest")
    assert files_in(tmp_path) == ["outer/dest/ok.png", "slip.zip"]
    for reason in ("('..' in path)", "/abs.png (absolute path)", "C:\\x.png (drive letter)",
                   "C:/y.png (drive letter)", "a\\..\\..\\evil3.png (backslash in name)",
                   "link.png (a link)"):
        assert reason in notes[1]


def test_unusable_names_are_refused_one_by_one_and_the_rest_is_kept(tmp_path):
    long_name = "x" * 300 + ".png"
    long_path = "/".join(["d" * 200] * 21) + "/f.png"       # > 4096 bytes
    near_limit = "/".join(["e" * 203] * 20) + "/f.png"      # 4085 bytes: too long only once under dest
    archive = tmp_path / "names.zip"
    with zipfile.ZipFile(archive, "w") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")                     # zipfile warns about the duplicate
        for name, data in [("a/b.png", b"first"), ("a/b.png", b"second"), (long_name, b"x"),
                           (long_path, b"x"), (near_limit, b"x"), ("c.png", b"file"),
                           ("c.png/d.png", b"in a folder named c.png"), ("e/f.png", b"lower"),
                           ("E/f.png", b"upper")]:
            z.writestr(name, data)
    dest, notes = unpack_uploads([str(archive)], tmp_path / "out")
    assert files_in(dest) == ["E/f.png", "a/b.png", "c.png", "e/f.png"]
    assert (dest / "a" / "b.png").read_bytes() == b"first"
    assert notes[0] == "4 file(s) received"
    assert notes[1].startswith("5 entries refused: a/b.png (name used twice), xxxx")
    assert notes[1].count(
        "(name too long)") == 3 and "c.png/d.png (name used for both a file and a folder)" in notes[1]


def test_nested_encrypted_and_unreadable_entries_are_skipped(tmp_path):
    inner = tmp_path / "inner.zip"
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("hidden-inside.png", b"x")
    archive = tmp_path / "outer.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(inner, "photos/inner.zip")
        z.writestr("photos/more.tar.gz", b"x")
        z.writestr("secret.png", b"not really encrypted, but flagged so")
        z.writestr("aes.png", b"x")
        z.writestr("ok.png", b"ok")
    patch_entry(archive, "secret.png", flags=0x1)
    patch_entry(archive, "aes.png", method=99)   # WinZip AES
    dest, notes = unpack_uploads([str(archive)], tmp_path / "out")
    assert files_in(dest) == ["ok.png"]
    assert notes[1] == (
        "4 entries refused: photos/inner.zip (an archive inside the zip is not unpacked), "
        "photos/more.tar.gz (an archive inside the zip is not unpacked), secret.png (encrypted), "
        "aes.png (compressed in a way this app cannot read)")


@pytest.mark.parametrize("damage", ["not a zip", "truncated", "corrupt data"])
def test_a_damaged_zip_is_refused_in_words_and_leaves_nothing(tmp_path, damage):
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.png", os.urandom(1000))
        z.writestr("b.png", b"b" * 60_000)  # within the 64 KiB any entry may produce, whatever its ratio
    data = bytearray(archive.read_bytes())
    if damage == "not a zip":
        data = b"this is not a zip"
    elif damage == "truncated":
        data = data[:len(data) // 2]
    else:
        start = data.index(b"b.png") + 5
        data[start:start + 40] = os.urandom(40)
    archive.write_bytes(bytes(data))
    loose = tmp_path / "loose.png"
    loose.write_bytes(b"copied before the zip")
    with pytest.raises(PathRefused) as refused:
        unpack_uploads([str(loose), str(archive)], tmp_path / "out")
    message = str(refused.value)
    assert message.startswith(("photos.zip is not a zip file or is damaged", "photos.zip is damaged ("))
    assert str(tmp_path) not in message and "Traceback" not in message
    assert not (tmp_path / "out").exists()
