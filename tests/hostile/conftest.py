"""Fixtures of the hostile suite: one `app.py --hosted` server per test module (small quotas, all its
temporary files under the module's own folder), the bombs made once, and two strangers' sessions.

The suite runs in the normal `pytest` run; each module starts its own server so that what one module
fills (quotas, memory peaks) does not change what the next one measures."""
from __future__ import annotations

import pytest

from tests.hostile.attack import Api, Server, make_bombs, shape_png


def start_server(tmp_path_factory, name: str, **env) -> Server:
    try:
        return Server(tmp_path_factory.mktemp(name), **env)
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def server(tmp_path_factory, request):
    """A hosted server for this module; a module may add environment with `SERVER_ENV = {...}`, and offer
    more models (EXPLORER_MODELS) with `SERVER_MODELS = ("noisy_model_dir", ...)`: fixtures of local-dir
    model folders (tests/conftest.py)."""
    env = dict(getattr(request.module, "SERVER_ENV", {}))
    models = [request.getfixturevalue(name) for name in getattr(request.module, "SERVER_MODELS", ())]
    if models:
        env["EXPLORER_MODELS"] = ",".join(f"local-dir:{folder}" for folder in models)
    srv = start_server(tmp_path_factory, "hostile-" + request.module.__name__.rsplit(".", 1)[-1], **env)
    yield srv
    srv.stop()
    if request.session.testsfailed:
        print(f"\n--- server log ({srv.log}) ---\n{srv.log_text(3000)}")


@pytest.fixture(scope="session")
def bombs(tmp_path_factory):
    return make_bombs(tmp_path_factory.mktemp("bombs"))


@pytest.fixture(scope="session")
def picture() -> bytes:
    """An ordinary photo: a red circle the shapes model recognises."""
    return shape_png("red", "circle", size=64, seed=5)


@pytest.fixture
def attacker(server):
    api = Api(server.url)
    yield api
    api.close()


@pytest.fixture
def visitor(server):
    api = Api(server.url)
    yield api
    api.close()
