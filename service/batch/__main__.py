"""``python -m service.batch``: score every image of a folder, glob or path list into
Parquet, JSONL or CSV, with the server's engine, locally or on Ray Data (``--ray``).

Exit status: 0 done; 2 nothing to do or a bad argument (empty input, OUT exists without
--resume, unknown task); 128 + N after signal N (OUT stays valid:
run again with --resume to finish).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import typing
from pathlib import Path

from service.batch.job import BatchJob, JobError
from service.batch.sinks import OutputError, check_output
from service.batch.sources import SourceError, resolve_source
from service.batch.summary import Summary
from service.settings import Settings

USAGE_ERROR = 2
LOCAL_RAY = "local"

RUNTIME_CHOICES = typing.get_args(Settings.model_fields["runtime"].annotation)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m service.batch", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--model-store", type=Path, default=Path("model_store"))
    parser.add_argument("--tasks", default="", help="comma list; default: every served task")
    parser.add_argument(
        "--input", required=True, help="folder, glob, or .txt/.csv/.parquet with a path column"
    )
    parser.add_argument(
        "--output", type=Path, required=True, help="OUT.parquet (a folder), .jsonl or .csv"
    )
    parser.add_argument("--faces", action="store_true", help="one row per detected face")
    parser.add_argument(
        "--distribution", action="store_true", help="add {task}_probabilities list columns"
    )
    parser.add_argument("--resume", action="store_true", help="skip paths already in OUT")
    parser.add_argument(
        "--ray",
        nargs="?",
        const=LOCAL_RAY,
        default=None,
        metavar="ADDRESS",
        help="run on Ray Data: a cluster address (ray://host:10001, auto), or none for a local Ray",
    )
    parser.add_argument(
        "--pack-store",
        action="store_true",
        help="with --ray: ship the registry inside the job instead of reading "
        "--model-store on every node",
    )
    parser.add_argument(
        "--batch-size", type=int, default=0, help="images per forward; 0 = measured"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="decoding threads (local, 2) or actors (Ray, 1)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="auto", help="auto, fp32, bf16 or fp16")
    parser.add_argument(
        "--runtime",
        default=os.environ.get("OCLIP_RUNTIME", "auto"),
        choices=RUNTIME_CHOICES,
        help="vision-tower runtime, as the server's OCLIP_RUNTIME (default: that variable, "
        "else auto: the fastest runtime whose parity gate passes, measured once and cached)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    job = BatchJob(
        store=args.model_store,
        out=args.output,
        tasks=tuple(name.strip() for name in args.tasks.split(",") if name.strip()),
        distribution=args.distribution,
        faces=args.faces,
        resume=args.resume,
        batch_size=args.batch_size,
        workers=args.workers or (1 if args.ray else 2),
        device=args.device,
        precision=args.precision,
        runtime=args.runtime,
        progress=not args.no_progress,
    )
    try:
        check_output(job.out, job.resume)
        paths = resolve_source(args.input)
        job.layout()  # unknown tasks fail here, before any model is loaded
        summary = Summary(total=len(paths))
        if args.ray is None:
            from service.batch.local import run_local

            run_local(job, paths, summary)
        else:
            from service.batch.ray_runner import run_ray

            address = None if args.ray == LOCAL_RAY else args.ray
            run_ray(job, paths, summary, address, args.pack_store)
    except (OutputError, SourceError, JobError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:  # a second Ctrl-C: OUT was closed on the way out
        print("interrupted twice: stopped at once; run again with --resume", file=sys.stderr)
        return 128 + signal.SIGINT
    for line in summary.lines():
        print(line)
    print(f"output: {job.out}")
    if summary.interrupted_by:
        return 128 + signal.Signals[summary.interrupted_by].value
    return 0


if __name__ == "__main__":
    sys.exit(main())
