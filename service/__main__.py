"""``python -m service``: every setting is a flag (``--model-store``) and an env var
(``OCLIP_MODEL_STORE``); flags win. SIGTERM drains gracefully; SIGHUP hot-reloads."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from types import FrameType
from typing import Any

import uvicorn

from service.api import create_app
from service.api.state import ServiceState
from service.config import Settings
from service.logs import configure_logging

log = logging.getLogger("service")


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
    """SIGTERM/SIGINT: readiness 503 and new work refused at once; exit 0 once every
    accepted request is answered (or the grace period ends). A second signal forces exit.
    SIGHUP: reload the registry in place."""

    def __init__(self, config: uvicorn.Config, state: ServiceState, settings: Settings) -> None:
        super().__init__(config)
        self.state = state
        self.settings = settings
        self.drain_started: float | None = None
        self.reload_requested = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGHUP:
            self.reload_requested = True
            return
        if self.drain_started is not None:
            self.should_exit = self.force_exit = True
            return
        log.info("signal %s: draining %d active requests", sig, self.state.active_requests)
        self.state.start_draining()
        self.drain_started = time.monotonic()

    async def on_tick(self, counter: int) -> bool:
        if self.reload_requested:
            self.reload_requested = False
            asyncio.get_running_loop().create_task(self._reload())
        if self.drain_started is not None:
            elapsed = time.monotonic() - self.drain_started
            drained = self.state.active_requests == 0
            if (drained and elapsed >= self.settings.shutdown_delay_s) or (
                elapsed >= self.settings.shutdown_grace_s
            ):
                return True
        return await super().on_tick(counter)

    async def _reload(self) -> None:
        try:
            await self.state.reload()
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
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 1,
    )
    server = GracefulServer(config, app.state.service, settings)
    signal.signal(signal.SIGHUP, server.handle_exit)
    server.run()


if __name__ == "__main__":
    main()
