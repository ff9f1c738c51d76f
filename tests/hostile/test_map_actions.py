"""The Map tab's selection actions as a stranger calls them (raw queue joins, as the page does): another
visitor's index, a server folder, or a path typed as a class name is refused, the same way whether it
exists or not, and nothing is read or written outside the caller's own workspace.

What a page sends these events is an index folder (the map's dropdown) and a class name; the selection
itself is the session's own state (filled from the map's points, never a name the page sends), and
each name in it is checked against the index again (tests/test_map_actions.py)."""
from __future__ import annotations

from tests.hostile.attack import UPLOAD, Api, shape_png, zipped


def _said(answer, sent: str) -> str:
    """What the answer says, the folder the caller sent itself left out (echoing it tells nothing)."""
    return f"{answer.event} {answer.text}".replace(sent or "FOLDER", "FOLDER")


def test_a_stranger_can_use_no_other_index_nor_make_a_path_a_class(server):
    visitor, attacker = Api(server.url), Api(server.url)
    try:
        photos = {f"mine/{c}_{s}/{i}.png": shape_png(c, s, seed=i)
                  for c, s in (("red", "circle"), ("blue", "square")) for i in range(3)}
        built = visitor.call("build_index", UPLOAD, "", visitor.upload(("photos.zip", zipped(photos))), None)
        assert built.event == "complete", built.text
        theirs = [str(p.parent) for p in server.sessions_dirs()[0].rglob("index.db")]
        assert len(theirs) == 1
        before = set(server.visitor_files())
        # None: no index picked; the map's dropdown (gradio checks a value against the session's own choices)
        # lets it through to the handlers, whose selection and class name come next
        folders = {"theirs": theirs[0], "server": "/etc", "up": "../../etc", "missing": theirs[0] + "-nope",
                   "none": None}
        calls = [("map_export", lambda f: [f]), ("map_set_a", lambda f: [f]),
                 ("map_add_class", lambda f: ["cats", f]), ("map_query", lambda f: [f])]
        for api, data in calls:
            said = {what: _said(attacker.submit([(api, data(folder))])[0], folder)
                    for what, folder in folders.items()}
            for what, text in said.items():
                assert "/etc/" not in text and server.workdir.name not in text, (api, what, text)
                assert "index.db" not in text and ".zip" not in text, (api, what, text)
            assert said["theirs"] == said["missing"], (api, said)  # whether it exists is not told
        for name in ("../../../tmp/evil", "a/b", "..", "x" * 200):
            for folder in (theirs[0], None):
                answer = attacker.submit([("map_add_class", [name, folder])])[0]
                assert answer.event in ("complete", "error") and "evil" not in str(server.visitor_files())
        after = set(server.visitor_files())
        # The stranger's calls wrote nothing anywhere (no export, no class zip), and the visitor's files
        # are as they were.
        assert after == before, sorted(map(str, after ^ before))[:5]
    finally:
        visitor.close()
        attacker.close()
