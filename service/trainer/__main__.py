"""``python -m service.trainer``: produce registry artifacts offline.

demo      random-weight backbone + age/aesthetics/decade, one prompt per rank (offline, fast)
zeroshot  template-ensemble prototypes from pretrained CLIP weights (needs the weights)
fit       learn OrdinalCLIP, CoOp or NumCLIP prompts; publishes when --model-store is given
compare   CoOp, OrdinalCLIP and NumCLIP on one protocol (synthetic set): JSON, Markdown, PNG
evaluate  figures (JSON) and a plot for a *published* task, through the server's engine code
calibrate fit a temperature and a conformal interval mass; publish a calibrated version
publish   publish the best epoch of a finished run directory
synth     write a synthetic ordinal dataset (disk size = rank) in the list format
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import torch

from service.registry import ModelStore, TaskManifest
from service.trainer.architectures import TINY, build_clip
from service.trainer.calibration import calibrate_published, split_list
from service.trainer.compare_protocol import add_compare_flags, protocol_from
from service.trainer.demo import explain_existing, publish_demo
from service.trainer.fit_config import TrainConfig, add_flags, load_config
from service.trainer.tasks import BUILTIN_TASKS, TaskSpec, parse_values
from service.trainer.zeroshot import publish_zeroshot


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-store", type=Path, required=True, help="registry folder")
    parser.add_argument("--seed", type=int, default=0, help="seed for random weights")


def _published_on_a_list(parser: argparse.ArgumentParser, level_help: str) -> None:
    """Flags of commands that run a published task version over a labelled list."""
    parser.add_argument("--model-store", type=Path, required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--version", help="default: the active version")
    parser.add_argument("--list", type=Path, required=True, help="list file, CSV or folder")
    parser.add_argument("--images-root", type=Path, default=Path("."))
    parser.add_argument("--precision", default="fp32", help="fp32 (default) or bf16")
    parser.add_argument("--level", type=float, default=0.9, help=level_help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service.trainer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="random-weight demo registry (meaningless predictions)")
    _common(demo)
    demo.add_argument(
        "--backbone",
        default=TINY,
        help=f"'{TINY}' (seconds) or any open_clip architecture, e.g. ViT-B-16",
    )
    demo.add_argument(
        "--if-empty", action="store_true", help="do nothing when the store already has tasks"
    )

    zeroshot = commands.add_parser("zeroshot", help="zero-shot prototypes from pretrained CLIP")
    _common(zeroshot)
    zeroshot.add_argument("--backbone", required=True, help="open_clip architecture, e.g. ViT-B-16")
    zeroshot.add_argument(
        "--pretrained",
        required=True,
        help="open_clip pretrained tag (e.g. openai) or checkpoint path",
    )
    zeroshot.add_argument(
        "--task",
        action="append",
        required=True,
        help=f"built-in ({', '.join(BUILTIN_TASKS)}) or a custom name; repeatable",
    )
    zeroshot.add_argument("--values", help="custom task ranks: '0:100' or '1,2,3'")
    zeroshot.add_argument("--labels", help="custom task labels, comma-separated")
    zeroshot.add_argument("--rank-words", help="custom task words in prompts (default: labels)")
    zeroshot.add_argument(
        "--template",
        action="append",
        help="custom task template with '{}' for the rank word; repeatable",
    )
    zeroshot.add_argument("--unit", help="custom task unit")
    fit = commands.add_parser("fit", help="learn rank prompts (torchrun-compatible)")
    add_flags(fit)
    fit.add_argument(
        "--calibrate-split",
        type=float,
        help="hold out this share of --val (per rank) and calibrate on it after publishing",
    )
    fit.add_argument("--calibrate-level", type=float, default=0.9, help="promised coverage")

    evaluate = commands.add_parser("evaluate", help="evaluate a published task")
    _published_on_a_list(evaluate, "the served interval level")
    evaluate.add_argument("--plot", type=Path, help="write a PNG here")
    evaluate.add_argument("--crop", choices=["none", "faces"], default="none", help="as in fit")
    evaluate.add_argument("--crop-margin", type=float, default=0.5, help="as in fit")
    evaluate.add_argument("--json", type=Path, help="write the figures (with bands) here")

    calibrate = commands.add_parser("calibrate", help="calibrate a published task on a list")
    _published_on_a_list(calibrate, "the coverage to promise")

    publish = commands.add_parser("publish", aliases=["export"], help="publish a finished run")
    publish.add_argument("--run", type=Path, required=True, help="the run's output folder")
    publish.add_argument("--model-store", type=Path, required=True)

    compare = commands.add_parser("compare", help="CoOp vs OrdinalCLIP vs NumCLIP, one protocol")
    add_compare_flags(compare)

    synth = commands.add_parser("synth", help="write a synthetic ordinal dataset")
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--ranks", type=int, default=10)
    synth.add_argument("--train-per-rank", type=int, default=40)
    synth.add_argument("--val-per-rank", type=int, default=10)
    synth.add_argument("--size", type=int, default=48, help="image side in pixels")
    synth.add_argument("--seed", type=int, default=0)
    return parser


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def custom_spec(args: argparse.Namespace, name: str) -> TaskSpec:
    if not args.values or not args.template:
        raise SystemExit(f"task {name!r} is not built in: give --values and --template")
    values = parse_values(args.values)
    labels = args.labels.split(",") if args.labels else None
    words = args.rank_words.split(",") if args.rank_words else labels or [f"{v:g}" for v in values]
    return TaskSpec(
        name=name,
        values=values,
        templates=args.template,
        rank_words=words,
        labels=labels,
        unit=args.unit,
    )


# The training and evaluation stack (data loading, face crops, matplotlib) is imported by the
# commands that use it, so that `demo`, on every first `make serve`, starts without it.


def run_fit(args: argparse.Namespace) -> None:
    from service.trainer.loop import fit
    from service.trainer.publish import publish_trained

    config = load_config(args)
    held_out = None
    if args.calibrate_split:
        if config.model_store is None:
            raise SystemExit("--calibrate-split publishes a calibrated version: give --model-store")
        kept, held_out = split_list(
            config.val,
            config.images_root,
            len(config.values()),
            args.calibrate_split,
            config.seed,
            config.output,
        )
        config = config.model_copy(update={"val": kept})
    result = fit(config)
    summary: dict[str, object] = {"best_epoch": result.best_epoch, **result.best_metrics}
    if config.model_store is not None and is_main_process():
        metrics = {**result.best_metrics, "best_epoch": result.best_epoch}
        manifest = publish_trained(
            ModelStore(config.model_store),
            result.built,
            result.model,
            config,
            result.scale,
            metrics,
        )
        summary["published"] = f"{manifest.task} {manifest.version} on {manifest.backbone}"
        if held_out is not None:
            calibrated = calibrate_published(
                config.model_store, config.task, held_out, config.images_root, args.calibrate_level
            )
            summary["calibrated"] = calibrated_summary(calibrated)
    if is_main_process():
        print(json.dumps(summary, indent=2))


def calibrated_summary(manifest: TaskManifest) -> dict[str, object]:
    block = manifest.calibration.model_dump() if manifest.calibration else {}
    return {"version": manifest.version, **block}


def run_publish(args: argparse.Namespace) -> None:
    from service.trainer.data import RankScale
    from service.trainer.loop import BEST, LOG
    from service.trainer.model import OrdinalClip
    from service.trainer.publish import publish_trained

    config = TrainConfig.model_validate_json((args.run / "config.json").read_text())
    built = build_clip(config.backbone, config.pretrained, seed=config.seed)
    scale = RankScale(config.values(), config.label_list())
    model = OrdinalClip(built, config, scale.num_ranks)
    model.load_state_dict(
        torch.load(args.run / BEST, map_location="cpu", weights_only=True), strict=False
    )
    history = [json.loads(line) for line in (args.run / LOG).read_text().splitlines()]
    best = min(history, key=lambda record: record["val_mae_expected"])
    metrics = {k.removeprefix("val_"): v for k, v in best.items() if k.startswith("val_")}
    metrics["best_epoch"] = best["epoch"]
    manifest = publish_trained(ModelStore(args.model_store), built, model, config, scale, metrics)
    print(f"{manifest.task} {manifest.version} -> backbone {manifest.backbone}")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "fit":
        run_fit(args)
        return
    if args.command in ("publish", "export"):
        run_publish(args)
        return
    if args.command == "evaluate":
        from service.trainer.evaluate import evaluate_published

        metrics = evaluate_published(
            args.model_store,
            args.task,
            args.list,
            args.images_root,
            args.precision,
            args.version,
            args.plot,
            level=args.level,
            json_path=args.json,
            crop=args.crop,
            crop_margin=args.crop_margin,
        )
        overall = {k: v for k, v in metrics.items() if not isinstance(v, list)}
        print(json.dumps(overall, indent=2))
        return
    if args.command == "calibrate":
        calibrated = calibrate_published(
            args.model_store,
            args.task,
            args.list,
            args.images_root,
            args.level,
            args.precision,
            args.version,
        )
        print(json.dumps(calibrated_summary(calibrated), indent=2))
        return
    if args.command == "compare":
        from service.trainer.compare import run_compare

        results = run_compare(protocol_from(args), args.out, args.work)
        print(json.dumps(results["summary"], indent=2))
        return
    if args.command == "synth":
        from service.trainer.synthetic import write_synthetic

        per_rank = {"train": args.train_per_rank, "val": args.val_per_rank}
        for split, path in write_synthetic(
            args.out, args.ranks, per_rank, args.size, args.seed
        ).items():
            print(f"{split}: {path}")
        return
    store = ModelStore(args.model_store)
    if args.command == "demo":
        if args.if_empty and store.task_names():
            warning = explain_existing(store, args.backbone, args.seed)
            if warning:
                logging.warning(warning)
            else:
                logging.info("%s already has tasks %s; leaving it", store.root, store.task_names())
            return
        published = publish_demo(store, args.backbone, args.seed)
    else:
        built = build_clip(args.backbone, pretrained=args.pretrained, seed=args.seed)
        specs = [BUILTIN_TASKS.get(name) or custom_spec(args, name) for name in args.task]
        published = publish_zeroshot(store, built, specs, "zeroshot")
    for manifest in published:
        print(f"{manifest.task} {manifest.version} -> backbone {manifest.backbone}")


if __name__ == "__main__":
    main()
