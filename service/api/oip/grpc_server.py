"""The protocol's gRPC service (``inference.GRPCInferenceService``) on its own port, on
the app's event loop and engine host: the same API keys (``authorization: Bearer`` or
``x-api-key`` metadata), early refusals, engine call, error table and metrics as REST.

An error's HTTP status maps to the usual gRPC code; its stable code travels in the
trailing metadata ``oclip-error-code`` (and ``retry-after`` where HTTP has the header)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from service import metrics
from service.api.deps import check_key, refuse_early
from service.api.oip import grpc_codec
from service.api.oip.grpc_codec import SERVICE, pb, services
from service.api.oip.infer import model_metadata, run_infer, served_version, server_metadata
from service.engine.lifecycle import EngineHost
from service.errors import INTERNAL_ERROR, ServiceError
from service.settings import Settings

log = logging.getLogger("service.grpc")

STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    409: grpc.StatusCode.ABORTED,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


class InferenceService(services.GRPCInferenceServiceServicer):  # type: ignore[misc,name-defined]
    def __init__(self, host: EngineHost, settings: Settings, api_keys: list[bytes]) -> None:
        self.host = host
        self.settings = settings
        self.api_keys = api_keys

    async def ServerLive(self, request: Any, context: aio.ServicerContext) -> Any:
        async def live() -> Any:
            return pb.ServerLiveResponse(live=True)

        return await self._answer("ServerLive", context, "", live)

    async def ServerReady(self, request: Any, context: aio.ServicerContext) -> Any:
        async def ready() -> Any:
            return pb.ServerReadyResponse(ready=self.host.ready)

        return await self._answer("ServerReady", context, "", ready)

    async def ServerMetadata(self, request: Any, context: aio.ServicerContext) -> Any:
        async def metadata() -> Any:
            return pb.ServerMetadataResponse(**server_metadata())

        return await self._answer("ServerMetadata", context, "", metadata)

    async def ModelReady(self, request: Any, context: aio.ServicerContext) -> Any:
        async def ready() -> Any:
            with self._engine(context) as engine:
                served_version(engine, request.name, request.version)
                return pb.ModelReadyResponse(ready=True)

        return await self._answer("ModelReady", context, request.name, ready)

    async def ModelMetadata(self, request: Any, context: aio.ServicerContext) -> Any:
        async def describe() -> Any:
            with self._engine(context) as engine:
                metadata = model_metadata(engine, request.name, request.version)
                return grpc_codec.model_metadata_response(metadata)

        return await self._answer("ModelMetadata", context, request.name, describe)

    async def ModelInfer(self, request: Any, context: aio.ServicerContext) -> Any:
        """As POST /v2/models/{task}/infer: key, early refusals, then the engine's lease."""
        arrived = time.monotonic()

        async def infer() -> Any:
            self._authenticate(context)
            refuse_early(self.host, arrived, [request.model_name])
            call = grpc_codec.infer_call(request, self.settings.max_images_per_request)
            with self.host.lease(arrived=arrived) as engine:
                answer = await run_infer(engine, call, self.settings.request_timeout_s)
            return grpc_codec.infer_response(answer)

        return await self._answer("ModelInfer", context, request.model_name, infer)

    def _authenticate(self, context: aio.ServicerContext) -> None:
        if self.api_keys:
            check_key(dict(context.invocation_metadata() or ()), self.api_keys)

    def _engine(self, context: aio.ServicerContext) -> Any:
        """The API key checked, then a lease on the served engine."""
        self._authenticate(context)
        return self.host.lease(arrived=time.monotonic())

    async def _answer(
        self,
        method: str,
        context: aio.ServicerContext,
        task: str,
        work: Callable[[], Awaitable[Any]],
    ) -> Any:
        """``work()``'s answer, or its error as a gRPC status; counted like an HTTP request
        (route = the RPC's path, status = the HTTP status of the same answer)."""
        route, start, status = f"/{SERVICE}/{method}", time.perf_counter(), 200
        try:
            return await work()
        except ServiceError as exc:
            status = exc.status
            await _abort(context, exc.status, exc.code, exc.message, exc.headers)
        except Exception:
            status = 500
            log.exception("unhandled error in %s", route)
            message = "internal error; the request was not processed"
            await _abort(context, 500, INTERNAL_ERROR.code, message, {})
        finally:
            seconds = time.perf_counter() - start
            label = task if status < 400 else ""
            metrics.REQUESTS.labels(route, label, "GRPC", str(status)).inc()
            metrics.REQUEST_SECONDS.labels(route).observe(seconds)
            log.info(
                "GRPC %s %d",
                route,
                status,
                extra={"status": status, "route": route, "duration_ms": round(seconds * 1000, 2)},
            )


async def _abort(
    context: aio.ServicerContext, status: int, code: str, message: str, headers: dict[str, str]
) -> None:
    metrics.ERRORS.labels(code).inc()
    trailers = [("oclip-error-code", code)]
    trailers += [(name.lower(), value) for name, value in headers.items() if name == "Retry-After"]
    context.set_trailing_metadata(tuple(trailers))
    await context.abort(STATUS_CODES.get(status, grpc.StatusCode.INTERNAL), message)


async def start_grpc(host: EngineHost, settings: Settings, api_keys: list[bytes]) -> aio.Server:
    """Serve the protocol on ``settings.grpc_port``; messages up to the upload limit."""
    limit = settings.max_upload_bytes
    server = aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ]
    )
    services.add_GRPCInferenceServiceServicer_to_server(
        InferenceService(host, settings, api_keys), server
    )
    address = f"{settings.host}:{settings.grpc_port}"
    if server.add_insecure_port(address) == 0:
        raise RuntimeError(f"cannot listen for gRPC on {address}")
    await server.start()
    log.info("gRPC (%s) listening on %s", SERVICE, address)
    return server
