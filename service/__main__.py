"""``python -m service``: every setting is a flag (``--model-store``) and an env var
(``OCLIP_MODEL_STORE``); flags win."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import uvicorn

from service.api import create_app
from service.config import Settings


def parse_overrides(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    for name, field in Settings.model_fields.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}", dest=name, default=None, help=field.description
        )
    return {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}


def main(argv: list[str] | None = None) -> None:
    defaults = Settings()
    settings = Settings.model_validate({**defaults.model_dump(), **parse_overrides(argv)})
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )


if __name__ == "__main__":
    main()
