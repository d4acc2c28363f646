"""The engine host's life cycle in process: signals, leases during uploads, stopping off
the event loop, and a failed reload that leaves the served engine and its gauges alone."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from prometheus_client import REGISTRY

from service.__main__ import GracefulServer
from service.api.app import create_app
from service.engine.factory import load_engine
from service.engine.lifecycle import EngineHost
from service.errors import ReloadFailed
from service.settings import Settings
from tests import images
from tests.unit.api.conftest import loaded_host


def test_the_signal_handler_never_takes_the_hosts_lock(tiny_store: Path) -> None:
    """A signal can land while the event-loop thread holds the host's (non-reentrant)
    lock; a handler that takes it hangs the process until SIGKILL. Here another thread
    holds the lock while the handler runs: it must return at once."""
    settings = Settings(model_store=tiny_store)
    app = create_app(
        settings, EngineHost(lambda: load_engine(tiny_store, settings.engine_config()))
    )
    server = GracefulServer(uvicorn.Config(app), app, settings)
    host: EngineHost = app.state.host
    handled = threading.Event()
    with host._lock:
        worker = threading.Thread(
            target=lambda: (server.handle_exit(signal.SIGTERM, None), handled.set())
        )
        worker.start()
        assert handled.wait(5), "the signal handler blocked on the host's lock"
    worker.join()
    assert server.exit_signal == signal.SIGTERM  # the event loop drains on its next tick
    assert not host.draining


def test_no_lease_is_held_while_the_body_trickles_in(tiny_store: Path) -> None:
    """A slow upload must not pin an engine (across a reload, or a drain)."""
    host = loaded_host(tiny_store)
    app = create_app(Settings(model_store=tiny_store), host)
    leases_while_uploading: list[int] = []
    picture = images.png()

    async def trickle() -> AsyncIterator[bytes]:
        for start in range(0, len(picture), len(picture) // 4 + 1):
            await asyncio.sleep(0.2)
            leases_while_uploading.append(host.active_leases)
            yield picture[start : start + len(picture) // 4 + 1]

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(
                "/v1/age/predict", content=trickle(), headers={"content-type": "image/png"}
            )

    try:
        response = asyncio.run(run())
    finally:
        host.stop()
    assert response.status_code == 200, response.text
    assert leases_while_uploading and set(leases_while_uploading) == {0}
    assert host.active_leases == 0


def test_a_retired_engine_is_stopped_off_the_event_loop(tiny_store: Path) -> None:
    config = Settings(model_store=tiny_store).engine_config()
    host = EngineHost(lambda: load_engine(tiny_store, config))
    host.start_loading()
    host.wait_loaded()
    stopped_in: list[str] = []
    done = threading.Event()
    old = host.engine
    assert old is not None
    original_stop = old.stop

    def recording_stop() -> None:
        stopped_in.append(threading.current_thread().name)
        original_stop()
        done.set()

    old.stop = recording_stop  # type: ignore[method-assign]

    async def scenario() -> None:
        with host.lease() as leased:
            assert leased is old
            await host.reload()  # old is retired, still leased
        # the lease ended here, on the event loop: stopping must happen elsewhere

    try:
        asyncio.run(scenario())
        assert done.wait(30)
    finally:
        host.stop()
    assert stopped_in == ["engine-stop"]


def test_a_failed_reload_keeps_the_served_engine_and_its_gauges(tiny_store: Path) -> None:
    config = Settings(model_store=tiny_store).engine_config()
    attempts = []

    def loader():  # the first load works, the reload fails after building part of an engine
        attempts.append(1)
        if len(attempts) > 1:
            raise RuntimeError("weights vanished")
        return load_engine(tiny_store, config)

    host = EngineHost(loader)
    host.start_loading()
    host.wait_loaded()
    served = host.engine
    assert served is not None
    (backbone_id, runtime) = next(iter(served.backbones.items()))
    held = runtime.batcher.admission.reserve(3)
    try:
        with pytest.raises(ReloadFailed, match="weights vanished"):
            asyncio.run(host.reload())
        assert host.engine is served
        depth = REGISTRY.get_sample_value("oclip_queue_depth", {"backbone": backbone_id})
        assert depth == 3.0  # still the served engine's batcher
    finally:
        held.release()
        host.stop()


def test_a_draining_server_refuses_before_reading_the_body(tiny_store: Path) -> None:
    host = loaded_host(tiny_store)
    app = create_app(Settings(model_store=tiny_store), host)
    sent: list[int] = []

    async def trickle() -> AsyncIterator[bytes]:
        for index in range(50):
            sent.append(index)
            yield b"\xff" * 1000
            await asyncio.sleep(0.1)

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(
                "/v1/age/predict", content=trickle(), headers={"content-type": "image/jpeg"}
            )

    host.start_draining()
    try:
        response = asyncio.run(run())
    finally:
        host.stop()
    assert response.status_code == 503 and response.json()["error"]["code"] == "shutting_down"
    assert len(sent) < 50  # answered before the upload was read to its end


def test_the_lease_ends_before_the_response_is_written(tiny_store: Path) -> None:
    """A client that stops reading its answer must not pin the engine."""
    host = loaded_host(tiny_store)
    app = create_app(Settings(model_store=tiny_store), host)
    body = images.png()
    leases_while_sending: list[int] = []

    async def run() -> None:
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.body":
                leases_while_sending.append(host.active_leases)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/age/predict",
            "raw_path": b"/v1/age/predict",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"image/png"), (b"host", b"test")],
            "client": ("127.0.0.1", 1),
            "server": ("test", 80),
        }
        await app(scope, receive, send)

    try:
        asyncio.run(run())
    finally:
        host.stop()
    assert leases_while_sending and set(leases_while_sending) == {0}


def test_no_reload_while_draining(tiny_store: Path) -> None:
    host = loaded_host(tiny_store)
    host.start_draining()
    try:
        with pytest.raises(ReloadFailed, match="shutting down"):
            asyncio.run(host.reload())
    finally:
        host.stop()


def test_a_reload_to_another_backbone_releases_the_old_one(
    tiny_store: Path, tmp_path: Path
) -> None:
    """The gauges used to keep the old backbone's batcher (and its tower) alive forever."""
    import gc
    import json
    import shutil
    import weakref

    other = tmp_path / "other"
    shutil.copytree(tiny_store, other)
    (backbone_dir,) = (other / "backbones").iterdir()
    manifest = json.loads((backbone_dir / "manifest.json").read_text())
    manifest["id"] = "renamed-backbone"
    (backbone_dir / "manifest.json").write_text(json.dumps(manifest))
    backbone_dir.rename(other / "backbones" / "renamed-backbone")
    for task_manifest in other.glob("tasks/*/versions/*/manifest.json"):
        data = json.loads(task_manifest.read_text())
        data["backbone"] = "renamed-backbone"
        task_manifest.write_text(json.dumps(data))

    stores = [tiny_store, other]
    config = Settings(model_store=tiny_store).engine_config()
    host = EngineHost(lambda: load_engine(stores.pop(0), config))
    host.start_loading()
    host.wait_loaded()
    assert host.engine is not None
    (old_batcher,) = [weakref.ref(b.batcher) for b in host.engine.backbones.values()]
    try:
        asyncio.run(host.reload())
        for _ in range(50):
            gc.collect()
            if old_batcher() is None:
                break
            threading.Event().wait(0.1)
        assert old_batcher() is None
        assert (
            REGISTRY.get_sample_value("oclip_queue_depth", {"backbone": "tiny-random-s0"}) is None
        )
    finally:
        host.stop()
