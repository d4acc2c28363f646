"""Closing the listener while draining resets no connection the kernel already accepted.

A connection that completed its handshake but was not yet taken by the event loop sits in
the listening socket's accept queue; closing the socket resets it. Here connections are
made (and their requests sent) while the event loop is not running, so they are certainly
still queued when the listener is closed in the same step: each must get a real answer,
and a connection made afterwards must be refused cleanly."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import uvicorn

from service.__main__ import GracefulServer, _accept_queued
from service.api.app import create_app
from service.settings import Settings
from tests.unit.api.conftest import loaded_host

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"


def test_accept_queued_takes_every_waiting_connection_and_leaves_the_listener() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        clients = [socket.create_connection(listener.getsockname()) for _ in range(3)]
        taken = _accept_queued(listener.fileno())
        assert len(taken) == 3
        assert _accept_queued(listener.fileno()) == []  # nothing left, and no error
        listener.settimeout(1)
        late = socket.create_connection(listener.getsockname())
        connection, _ = listener.accept()  # the listener itself still works
        for sock in (*clients, *taken, late, connection):
            sock.close()


def test_queued_connections_are_answered_when_the_listener_closes(tiny_store: Path) -> None:
    settings = Settings(model_store=tiny_store)
    app = create_app(settings, loaded_host(tiny_store))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off")
    config.load()
    server = GracefulServer(config, app, settings)
    server.lifespan = config.lifespan_class(config)  # what uvicorn's serve() sets up

    async def scenario() -> tuple[list[bytes], bool]:
        await server.startup()
        address = server.servers[0].sockets[0].getsockname()
        queued = []
        for _ in range(4):  # no await: the loop cannot accept these before the close
            client = socket.create_connection(address)
            client.sendall(REQUEST)
            queued.append(client)
        server._close_listeners()
        answers = await asyncio.gather(*(asyncio.to_thread(read_all, client) for client in queued))
        try:
            socket.create_connection(address, timeout=1).close()
            refused = False
        except ConnectionRefusedError:
            refused = True
        server.should_exit = True
        await server.shutdown()
        return answers, refused

    answers, refused = asyncio.run(scenario())
    assert all(answer.startswith(b"HTTP/1.1 200") for answer in answers), answers
    assert refused


def read_all(client: socket.socket) -> bytes:
    client.settimeout(10)
    chunks = []
    try:
        while chunk := client.recv(65536):  # a reset raises ConnectionResetError here
            chunks.append(chunk)
    finally:
        client.close()
    return b"".join(chunks)
