"""Every byte a visitor sends is counted: the allowed roots admit no sibling folder, the upload limits
hold across several files and zips together (whatever their headers declare), quotas are reserved
before unpacking so uploads running at once cannot pass them, a new visitor makes room by evicting
the least recently active idle sessions (who are told when they return), a session in use never
expires nor is evicted, and a small zip entry is held to the compression ratio too. Each test is
meant to fail on a one-line slip in that bookkeeping."""
from __future__ import annotations

import io
import os
import threading
import zipfile

import pytest

from explorer.app.context import AppContext
from explorer.app.workspace import EVICTED, folder_bytes
from explorer.embed.model import ModelSlot
from explorer.inputs.archives import ArchiveLimits
from explorer.inputs.roots import PathRefused, UploadArea, allowed_folder, inside_roots, unpack_uploads
from explorer.inputs.settings import load_settings
from tests.test_archives import Gushing, files_in

KiB, MiB = 2**10, 2**20


def hosted(tmp_path, **env) -> AppContext:
    settings = load_settings(env={"EXPLORER_HOSTED": "1", "EXPLORER_INDEX_DIR": str(tmp_path / "idx"),
                                  "EXPLORER_ALLOWED_ROOTS": str(tmp_path), **env})
    return AppContext.create(settings, ModelSlot(), upload_dir=tmp_path / "shared",
                             hosted_dir=tmp_path / "sessions")


def random_zip(path, count=1, size=300 * KiB, name="{}.png") -> str:
    """A zip of `count` stored entries of `size` random bytes each (no compression to speak of)."""
    with zipfile.ZipFile(path, "w") as z:
        for i in range(count):
            z.writestr(name.format(i), os.urandom(size))
    return str(path)


# ---- the allowed roots ------------------------------------------------------------------------------
def test_a_root_never_admits_a_sibling_whose_name_it_begins(tmp_path):
    root, sibling = tmp_path / "x" / "data", tmp_path / "x" / "data2"
    (root / "trip").mkdir(parents=True)
    (sibling / "trip").mkdir(parents=True)
    assert allowed_folder(str(root / "trip"), (root,)) == (root / "trip").resolve()
    for typed in (sibling, sibling / "trip"):
        with pytest.raises(PathRefused, match="outside the folders"):
            allowed_folder(str(typed), (root,))
        assert not inside_roots(typed, (root,))
    assert inside_roots(root, (root,)) and not inside_roots(tmp_path / "x", (root,))
    area = UploadArea(tmp_path / "up")
    assert not area.contains(tmp_path / "up2" / "a.png") and area.contains(tmp_path / "up" / "a.png")


# ---- limits across several files and zips -----------------------------------------------------------
def test_the_file_count_holds_across_several_zips_and_files_together(tmp_path):
    one, two = (random_zip(tmp_path / f"{n}.zip", 3, 10, name=n + "{}.png") for n in ("one", "two"))
    loose = tmp_path / "loose.png"
    loose.write_bytes(b"x" * 10)
    for alone in (one, two):
        assert len(
            files_in(unpack_uploads([alone], tmp_path / f"ok-{os.path.basename(alone)}",
                                    max_files=6)[0])) == 3
    assert len(files_in(unpack_uploads([one, two], tmp_path / "six", max_files=6)[0])) == 6
    for files in ([one, two, str(loose)], [one, str(loose), two], [str(loose), one, two]):
        with pytest.raises(PathRefused,
                           match="more than 6 files .*--max-upload-files or EXPLORER_MAX_UPLOAD_FILES"):
            unpack_uploads(files, tmp_path / "out", max_files=6)
        assert not (tmp_path / "out").exists()


def test_the_byte_limit_holds_across_several_zips_and_files_together(tmp_path):
    zips = [random_zip(tmp_path / f"{n}.zip", 1, 300, name=n + "{}.png") for n in "abc"]
    loose = tmp_path / "loose.png"
    loose.write_bytes(b"x" * 300)
    for two in ([zips[0], zips[1]], [zips[2], str(loose)]):
        assert len(
            files_in(unpack_uploads(two, tmp_path / f"ok-{len(os.listdir(tmp_path))}",
                                    max_bytes=800)[0])) == 2
    for files, refused in ((zips, "expands to more than 800 bytes"),
                           ([zips[0], str(loose), zips[1]], "expands to more than 800 bytes"),
                           ([zips[0], zips[1], str(loose)], "larger than 800 bytes")):
        with pytest.raises(PathRefused, match=refused + r" \(the limit is set with --max-upload-total-mb"):
            unpack_uploads(files, tmp_path / "out", max_bytes=800)
        assert not (tmp_path / "out").exists()


def test_the_bytes_written_by_several_zips_count_together_whatever_they_declare(tmp_path, monkeypatch):
    """Each zip declares a 4-byte entry and writes 3 MiB: alone within 5 MiB, together not."""
    zips = []
    for name in ("one", "two"):
        with zipfile.ZipFile(tmp_path / f"{name}.zip", "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(f"{name}.png", b"tiny")
        zips.append(str(tmp_path / f"{name}.zip"))
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda *a, **k: io.BufferedReader(Gushing(3 * MiB)))
    limits = ArchiveLimits(max_bytes=5 * MiB, max_ratio=1e9)
    assert files_in(unpack_uploads(zips[:1], tmp_path / "alone", limits=limits)[0]) == ["one.png"]
    with pytest.raises(PathRefused, match="expands to more than 5 MiB"):
        unpack_uploads(zips, tmp_path / "out", limits=limits)
    assert not (tmp_path / "out").exists()


def test_the_upload_limits_come_from_the_settings(tmp_path):
    ctx = hosted(tmp_path, EXPLORER_MAX_UPLOAD_FILES="4", EXPLORER_MAX_UPLOAD_TOTAL_MB="0.5")
    a = ctx.scoped("a")
    with pytest.raises(PathRefused, match="more than 4 files"):
        a.unpack([random_zip(tmp_path / "five.zip", 5, 10)])
    with pytest.raises(PathRefused, match="expands to more than 524,288 bytes"):
        a.unpack([random_zip(tmp_path / "two.zip", 2, 300 * KiB)])
    assert a.unpack([random_zip(tmp_path / "ok.zip", 4, 100 * KiB)])
    assert folder_bytes(a.workspace.folder) < 512 * KiB


# ---- reservations: uploads running at once ----------------------------------------------------------
def unpack_at_once(monkeypatch, jobs) -> list:
    """Run `jobs` (ctx, files) in threads that all pass the quota check before any writes a byte
    (a barrier in UploadArea.unpack) -> each one's folder, or the PathRefused it raised."""
    barrier, real = threading.Barrier(len(jobs), timeout=3), UploadArea.unpack

    def held(self, *args, **kwargs):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:  # some were refused before unpacking: they never come
            pass
        return real(self, *args, **kwargs)
    monkeypatch.setattr(UploadArea, "unpack", held)
    results = [None] * len(jobs)

    def run(i, ctx, files):
        try:
            results[i] = ctx.unpack(files)[0]
        except PathRefused as exc:
            results[i] = exc
    threads = [threading.Thread(target=run, args=(i, *job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_concurrent_unpacks_into_one_session_never_pass_its_quota(tmp_path, monkeypatch):
    ctx = hosted(tmp_path, EXPLORER_SESSION_QUOTA_MB="1")          # 4 x 450 KiB into 1 MiB
    a = ctx.scoped("a")
    zips = [random_zip(tmp_path / f"{i}.zip", 1, 450 * KiB) for i in range(4)]
    results = unpack_at_once(monkeypatch, [(a, [z]) for z in zips])
    done = [r for r in results if not isinstance(r, Exception)]
    assert 1 <= len(done) <= 2, results
    assert all("fill this session" in str(r) or "room left" in str(r) for r in results
               if isinstance(r, Exception))
    assert folder_bytes(a.workspace.folder) <= 1 * MiB
    assert a.workspace.reserved == 0  # every reservation released


def test_concurrent_unpacks_of_several_sessions_never_pass_the_shared_quota(tmp_path, monkeypatch):
    ctx = hosted(tmp_path, EXPLORER_HOSTED_QUOTA_MB="1")
    sessions = [ctx.scoped(name) for name in "abcd"]
    zips = [random_zip(tmp_path / f"{i}.zip", 1, 450 * KiB) for i in range(4)]
    results = unpack_at_once(monkeypatch, [(s, [z]) for s, z in zip(sessions, zips)])
    assert 1 <= sum(not isinstance(r, Exception) for r in results) <= 2, results
    assert folder_bytes(ctx.workspaces.base) <= 1 * MiB
    assert ctx.workspaces.used() == folder_bytes(ctx.workspaces.base)  # nothing left reserved


# ---- a session in use; eviction ---------------------------------------------------------------------
def test_a_session_in_use_never_expires(tmp_path):
    ctx = hosted(tmp_path)
    spaces = ctx.workspaces
    a = ctx.scoped("a")
    a.unpack([random_zip(tmp_path / "a.zip", 1, 10)])
    with spaces.in_use("a"):
        spaces.ttl_seconds = 0
        assert spaces.expire() == 0 and a.workspace.folder.is_dir()
        ctx.scoped("b")  # another visitor's request, which expires what is idle
        assert a.workspace.folder.is_dir()
        spaces.end("a")  # the page is closed while its request runs: removed when the request ends
        assert a.workspace.folder.is_dir()
    assert not a.workspace.folder.exists()
    ctx.scoped("c")
    assert spaces.sessions() == 1  # b expired once idle; c is new


def test_a_new_visitor_evicts_the_least_recently_active_idle_sessions_first(tmp_path):
    ctx = hosted(tmp_path, EXPLORER_HOSTED_QUOTA_MB="1")  # room for two uploads of 450 KiB
    spaces = ctx.workspaces
    a, b = ctx.scoped("a"), ctx.scoped("b")
    a.unpack([random_zip(tmp_path / "a.zip", 1, 450 * KiB)])
    b.unpack([random_zip(tmp_path / "b.zip", 1, 450 * KiB)])
    ctx.scoped("a")  # A is active again: B is now the least recently active
    c = ctx.scoped("c")
    assert c.unpack([random_zip(tmp_path / "c.zip", 1, 450 * KiB)])  # never refused because of others
    assert a.workspace.folder.is_dir() and not b.workspace.folder.exists()
    assert folder_bytes(spaces.base) <= 1 * MiB
    # B returns: told what happened, in place of "not one of yours" too; a new upload clears it.
    assert spaces.notice("b") == EVICTED
    back = ctx.scoped("b")
    with pytest.raises(PathRefused, match="make room for other visitors; upload them again"):
        back.open_index(str(tmp_path / "anything"))
    with spaces.in_use("a"), spaces.in_use("c"):  # sessions in use are never evicted: B gets what is left
        with pytest.raises(PathRefused, match="room left for your uploads"):
            back.unpack([random_zip(tmp_path / "b2.zip", 1, 450 * KiB)])
    assert a.workspace.folder.is_dir() and c.workspace.folder.is_dir() and spaces.notice("b") == EVICTED
    ctx.scoped("c")  # C active after A
    assert back.unpack([random_zip(tmp_path / "b3.zip", 1, 450 * KiB)])  # A idle again, and older than C
    assert not a.workspace.folder.exists() and c.workspace.folder.is_dir()
    assert spaces.notice("b") is None and spaces.notice("a") == EVICTED


def test_the_session_asking_is_never_evicted_for_its_own_upload(tmp_path):
    ctx = hosted(tmp_path, EXPLORER_HOSTED_QUOTA_MB="1")
    a, b = ctx.scoped("a"), ctx.scoped("b")
    a.unpack([random_zip(tmp_path / "a.zip", 1, 450 * KiB)])
    b.unpack([random_zip(tmp_path / "b.zip", 1, 450 * KiB)])
    ctx.scoped("b")
    assert a.unpack([random_zip(tmp_path / "a2.zip", 1, 450 * KiB)])  # A is the oldest, yet B goes
    assert a.workspace.folder.is_dir() and not b.workspace.folder.exists()
    assert len(files_in(a.workspace.folder / "uploads")) == 2


# ---- the compression ratio of small entries ---------------------------------------------------------
def test_a_small_entry_compressed_930_to_1_is_refused(tmp_path):
    archive = tmp_path / "small-bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("photo.png", bytes(930 * KiB))
    info = zipfile.ZipFile(archive).getinfo("photo.png")
    assert info.file_size / info.compress_size > 900
    with pytest.raises(PathRefused, match="compressed more than 100:1"):
        unpack_uploads([str(archive)], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_small_entries_within_the_allowance_or_the_ratio_pass(tmp_path):
    archive = tmp_path / "fine.zip"
    captions = "".join(
        f"img{i:05d}.png,a photo of a {['red', 'green', 'blue'][i % 3]} shape number {i * 7919 % 10007}\n"
        for i in range(5000))
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("tiny.png", bytes(60 * KiB))      # 1000:1, but within the 64 KiB any entry may produce
        z.writestr("captions.csv", captions)          # real text: a few to one
    assert sorted(files_in(unpack_uploads([str(archive)],
                                          tmp_path / "out")[0])) == ["captions.csv", "tiny.png"]


def test_an_evicted_visitor_is_told_once_by_the_page_on_their_next_event(tmp_path, monkeypatch):
    """The event wrapper every handler runs in (ui.kept_in_use) shows the eviction notice as a page
    warning on the returning visitor's next event, once; other visitors are never told."""
    import gradio as gr

    from explorer.app import ui

    ctx = hosted(tmp_path, EXPLORER_HOSTED_QUOTA_MB="1")
    ctx.scoped("a").unpack([random_zip(tmp_path / "a.zip", 1, 450 * KiB)])
    ctx.scoped("b").unpack([random_zip(tmp_path / "b.zip", 1, 450 * KiB)])
    ctx.scoped("b")
    ctx.scoped("c").unpack([random_zip(tmp_path / "c.zip", 1, 450 * KiB)])  # A (least recent) is evicted
    warned = []
    monkeypatch.setattr(gr, "Warning", warned.append)

    def request(session):
        return gr.Request(session_hash=session)

    handler = ui._in_use(ctx, lambda text, request: text.upper())
    assert handler("x", request("b")) == "X" and warned == []
    assert handler("y", request("a")) == "Y" and warned == [EVICTED]
    handler("z", request("a"))
    assert warned == [EVICTED]  # once


def filled_by_raw_uploads(tmp_path, model):
    """A hosted context with a 1 MiB shared quota whose gradio cache (counted) is full: an example
    file gradio keeps, and nine uploads no session owns (as /gradio_api/upload leaves them)."""
    from explorer.app.ui import build_app

    cache = tmp_path / "gradio-cache"
    cache.mkdir()
    env = {
        "EXPLORER_HOSTED": "1", "EXPLORER_INDEX_DIR": str(tmp_path / "idx"),
        "EXPLORER_ALLOWED_ROOTS": str(tmp_path), "EXPLORER_HOSTED_QUOTA_MB": "1",
        "EXPLORER_CACHE_GRACE_SECONDS": "1"
    }
    ctx = AppContext.create(load_settings(env=env), ModelSlot(), upload_dir=tmp_path / "shared",
                            hosted_dir=tmp_path / "sessions", counted=(cache,))
    ctx.slot.model = model
    app = build_app(ctx)
    kept = cache / "example.png"
    kept.write_bytes(os.urandom(100 * KiB))
    app.blocks[next(iter(app.blocks))].keep_in_cache.add(str(kept))  # as offer_examples keeps its files
    attack = [cache / f"raw-{i}.bin" for i in range(9)]
    for path in attack:
        path.write_bytes(os.urandom(100 * KiB))
    app.upload_file_set.update(str(p) for p in attack + [kept])
    return ctx, kept, attack


def test_uploads_no_session_owns_never_lock_a_newcomer_out(tmp_path, shapes_model):
    """/gradio_api/upload needs no session: an attacker's raw uploads fill gradio's cache, which counts
    in the shared quota and which no eviction of sessions frees. The newcomer still gets room: gradio's
    own sweep runs early for files older than the grace period; the examples' files, which gradio keeps,
    and uploads younger than the grace stay."""
    import time as clock

    ctx, kept, attack = filled_by_raw_uploads(tmp_path, shapes_model)
    newcomer = ctx.scoped("newcomer")
    with pytest.raises(PathRefused, match="room left"):  # the attacker's uploads are within the grace
        newcomer.unpack([random_zip(tmp_path / "n.zip", 1, 300 * KiB)])
    assert all(p.exists() for p in attack)
    clock.sleep(1.2)
    assert newcomer.unpack([random_zip(tmp_path / "n2.zip", 1, 300 * KiB)])
    assert kept.is_file() and not any(p.exists() for p in attack)


def test_gradios_cache_is_trimmed_on_a_schedule_when_over_the_shared_quota(tmp_path, shapes_model):
    """Nothing else bounds raw uploads until their age runs out: the UI's check trims them once over."""
    import time as clock

    ctx, kept, attack = filled_by_raw_uploads(tmp_path, shapes_model)
    (tmp_path / "gradio-cache" / "one-more.bin").write_bytes(os.urandom(100 * KiB))  # now over 1 MiB
    clock.sleep(1.2)
    assert ctx.workspaces.keep_within_quota()
    assert kept.is_file() and not any(p.exists() for p in attack)
    assert not ctx.workspaces.keep_within_quota()  # within the quota: nothing to do
