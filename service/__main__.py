"""``python -m service``: every setting is a flag (``--model-store``) and an env var
(``OCLIP_MODEL_STORE``); flags win. SIGTERM drains gracefully; SIGHUP hot-reloads."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import time
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from service.api import create_app
from service.api.middleware import InFlight
from service.engine.lifecycle import EngineHost
from service.logs import configure_logging
from service.settings import Settings

log = logging.getLogger("service")
FINAL_CLOSE_S = 5  # after the drain: longest wait for the last responses to be written
# After the listener is closed, the open connections are closed once their clients have
# closed them all, or no request has arrived for this long: requests on connections
# already accepted get their 503, not a reset.
SETTLE_S = 2.0
# The listener closes only once the last request from before the signal has been answered
# this long ago: that client's next request gets a 503, not a refused or reset connection.
LINGER_S = 1.0


def _accept_queued(listener_fd: int) -> list[socket.socket]:
    """Every connection waiting in a listening socket's accept queue, taken now."""
    listener = socket.socket(fileno=os.dup(listener_fd))  # the same socket, our own handle
    listener.setblocking(False)
    taken = []
    try:
        while True:
            try:
                connection, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return taken
            connection.setblocking(False)
            taken.append(connection)
    finally:
        listener.close()  # closes only the duplicate handle


def parse_overrides(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    for name, field in Settings.model_fields.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            default=None,
            help=(field.description or "").replace("%", "%%"),
        )
    return {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}


class GracefulServer(uvicorn.Server):
    """SIGTERM/SIGINT: readiness 503 at once; requests that arrived before the signal get
    full answers, later ones 503 ``shutting_down`` with ``Retry-After`` and
    ``Connection: close``. After ``shutdown_delay_s`` (time for a load balancer to notice)
    and once every request is answered, the listener closes, then the connections, and the
    process exits 0; ``shutdown_grace_s`` bounds the wait. A second signal forces exit.
    SIGHUP: reload the registry in place.

    The signal handler only sets flags: the host's lock is not reentrant, and a signal can
    land while the event-loop thread holds it."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, settings: Settings) -> None:
        super().__init__(config)
        self.host: EngineHost = app.state.host
        self.in_flight: InFlight = app.state.in_flight
        self.settings = settings
        self.exit_signal: int | None = None
        self.listener_closed_at: float | None = None
        self.drained_at: float | None = None
        self.reload_requested = False
        self._handing_over: set[asyncio.Task] = set()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGHUP:
            self.reload_requested = True
        elif self.exit_signal is not None:
            self.should_exit = self.force_exit = True
        else:
            self.exit_signal = sig

    async def on_tick(self, counter: int) -> bool:
        if self.reload_requested:
            self.reload_requested = False
            asyncio.get_running_loop().create_task(self._reload())
        if self.exit_signal is not None:
            if not self.host.draining:
                self.host.start_draining()
                log.info("signal %s: draining %d requests", self.exit_signal, self.in_flight.count)
            drain_started = self.host.drain_started or 0.0
            elapsed = time.monotonic() - drain_started
            if self.in_flight.arrived_before(drain_started) > 0:
                self.drained_at = None
            elif self.drained_at is None:
                self.drained_at = time.monotonic()
            drained = self.drained_at is not None and time.monotonic() - self.drained_at >= LINGER_S
            if self.listener_closed_at is not None:
                now = time.monotonic()
                quiet = now - max(self.listener_closed_at, self.in_flight.last_arrival)
                return (
                    not self.server_state.connections
                    or quiet >= SETTLE_S
                    or elapsed >= self.settings.shutdown_grace_s + SETTLE_S
                )
            if (drained and elapsed >= self.settings.shutdown_delay_s) or (
                elapsed >= self.settings.shutdown_grace_s
            ):
                self._close_listeners()
                self.listener_closed_at = time.monotonic()
        return await super().on_tick(counter)

    def _close_listeners(self) -> None:
        """Stop listening without resetting a connection the kernel has already accepted.

        Closing a listening socket resets every connection still in its accept queue, and
        under load a busy event loop leaves a few there (14 resets on a slower machine).
        So the queue is emptied first, in the same step as the close (no await between),
        and each connection taken from it is served like any other: its request gets the
        503 ``shutting_down``. New connections are refused from then on, cleanly."""
        loop = asyncio.get_running_loop()
        taken: list[socket.socket] = []
        for server in self.servers:
            for listener in server.sockets:
                taken.extend(_accept_queued(listener.fileno()))
            server.close()
        for connection in taken:
            task = loop.create_task(loop.connect_accepted_socket(self._new_protocol, connection))
            self._handing_over.add(task)  # keep a reference until the protocol has it
            task.add_done_callback(self._handing_over.discard)
        if taken:
            log.info("drain: served %d connections from the accept queue", len(taken))

    def _new_protocol(self) -> asyncio.Protocol:
        """The protocol uvicorn gives each accepted connection (as in ``startup``)."""
        protocol: asyncio.Protocol = self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state
        )
        return protocol

    async def _reload(self) -> None:
        try:
            await self.host.reload()
        except Exception:  # reload() logged why; the old models keep serving
            return


def main(argv: list[str] | None = None) -> None:
    defaults = Settings()
    settings = Settings.model_validate({**defaults.model_dump(), **parse_overrides(argv)})
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        # on_tick already waited for the requests that matter (up to the grace); what is
        # left are refusals and idle keep-alive connections.
        timeout_graceful_shutdown=FINAL_CLOSE_S,
    )
    server = GracefulServer(config, app, settings)
    signal.signal(signal.SIGHUP, server.handle_exit)
    server.run()


if __name__ == "__main__":
    main()
