"""Pure ASGI middleware: request ids, request metrics, and the request-body size limit."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import metrics
from service.api.errors import error_response, internal_error_response
from service.errors import PayloadTooLarge
from service.logs import request_id as current_request_id

log = logging.getLogger("service.access")

REQUEST_ID_HEADER = b"x-request-id"
# While draining, a refusal reads at most this much of an unread body, for at most this
# long, so that its connection can close without a reset.
DRAIN_BODY_BYTES = 16 << 20
DRAIN_BODY_S = 1.0
_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


class InFlight:
    """Arrival times of the HTTP requests being handled now. A draining server waits for
    those that arrived before the signal; later ones are refused quickly and do not count."""

    def __init__(self) -> None:
        self._arrivals: dict[int, float] = {}
        self.last_arrival = 0.0

    def enter(self, key: int, arrived: float) -> None:
        self._arrivals[key] = arrived
        self.last_arrival = arrived

    def leave(self, key: int) -> None:
        self._arrivals.pop(key, None)

    @property
    def count(self) -> int:
        return len(self._arrivals)

    def arrived_before(self, moment: float) -> int:
        return sum(1 for arrived in list(self._arrivals.values()) if arrived < moment)


class RequestContextMiddleware:
    """Tags each request with an id (the client's ``X-Request-ID`` if sane) and its arrival
    time, records its route-level count, status and latency, and turns any unhandled
    exception into a JSON 500 that still carries the request id. While the server drains,
    responses say ``Connection: close`` so keep-alive clients reconnect elsewhere. Closing
    a socket that still has unread upload bytes makes the kernel reset it (the client would
    lose its 503), so a refusal sent before the body was read first reads the rest of it,
    within DRAIN_BODY_S and DRAIN_BODY_BYTES; a body that does not arrive in time keeps its
    connection open instead."""

    def __init__(self, app: ASGIApp, in_flight: InFlight, draining: Callable[[], bool]) -> None:
        self.app = app
        self.in_flight = in_flight
        self.draining = draining

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])  # once for the headers this middleware reads
        given = headers.get(REQUEST_ID_HEADER, b"")
        request_id = given if _SAFE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex.encode()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id.decode()
        state["arrived"] = time.monotonic()
        token = current_request_id.set(request_id.decode())
        status = 500
        started = False
        start = time.perf_counter()
        body_received = not _has_body(headers)

        async def receive_tracked() -> Message:
            nonlocal body_received
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_received = True
            return message

        async def drain_body() -> bool:
            """Read and drop what is left of the body; True once all of it is in."""
            read = 0
            try:
                async with asyncio.timeout(DRAIN_BODY_S):
                    while not body_received and read <= DRAIN_BODY_BYTES:
                        message = await receive_tracked()
                        if message["type"] == "http.disconnect":
                            return False
                        read += len(message.get("body", b""))
            except TimeoutError:
                return False
            return body_received

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                sent = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id)]
                if self.draining() and (body_received or await drain_body()):
                    sent.append((b"connection", b"close"))
                message["headers"] = sent
            await send(message)

        metrics.IN_FLIGHT.inc()
        self.in_flight.enter(id(state), state["arrived"])
        try:
            await self.app(scope, receive_tracked, send_with_id)
        except Exception as exc:
            log.exception("unhandled error", exc_info=exc)
            if started:
                raise  # the answer is half sent: only closing the connection is honest
            await internal_error_response(scope["path"])(scope, receive_tracked, send_with_id)
        finally:
            self.in_flight.leave(id(state))
            metrics.IN_FLIGHT.dec()
            _record(scope, status, time.perf_counter() - start)
            current_request_id.reset(token)


def _has_body(headers: dict[bytes, bytes]) -> bool:
    return b"transfer-encoding" in headers or headers.get(b"content-length", b"0") != b"0"


def _record(scope: Scope, status: int, seconds: float) -> None:
    """Request metrics and the access log line. The task label comes from the route's path
    parameter, and only for answered requests: an unknown task never becomes a label."""
    route = getattr(scope.get("route"), "path", "unmatched")
    task = scope.get("path_params", {}).get("task", "") if status < 400 else ""
    if route == "/v1/predict":
        task = "multi"
    metrics.REQUESTS.labels(route, task, scope["method"], str(status)).inc()
    metrics.REQUEST_SECONDS.labels(route).observe(seconds)
    log.info(
        "%s %s %d",
        scope["method"],
        scope["path"],
        status,
        extra={"status": status, "route": route, "duration_ms": round(seconds * 1000, 2)},
    )


class BodySizeLimitMiddleware:
    """Refuses bodies over ``max_bytes``: at once from Content-Length, or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            message = self._message(int(declared))
            response = error_response(413, PayloadTooLarge.code, message, path=scope["path"])
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(self._message(received))
            return message

        await self.app(scope, limited_receive, send)

    def _message(self, size: int) -> str:
        return f"request body of {size}+ bytes exceeds the limit of {self.max_bytes} bytes"
