"""``python -m service.trainer``: produce registry artifacts offline.

demo      random-weight backbone + age/aesthetics/decade from its real text tower (offline)
zeroshot  template-ensemble prototypes from pretrained CLIP weights (needs the weights)
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from service.registry import ModelStore
from service.trainer.architectures import TINY, build_clip
from service.trainer.tasks import BUILTIN_TASKS, TaskSpec, parse_values
from service.trainer.zeroshot import publish_zeroshot


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-store", type=Path, required=True, help="registry folder")
    parser.add_argument("--seed", type=int, default=0, help="seed for random weights")


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
    return parser


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


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    store = ModelStore(args.model_store)
    if args.command == "demo":
        if args.if_empty and store.task_names():
            logging.info("%s already has tasks %s; leaving it", store.root, store.task_names())
            return
        built = build_clip(args.backbone, pretrained=None, seed=args.seed)
        specs = list(BUILTIN_TASKS.values())
        producer = "demo"
    else:
        built = build_clip(args.backbone, pretrained=args.pretrained, seed=args.seed)
        specs = [BUILTIN_TASKS.get(name) or custom_spec(args, name) for name in args.task]
        producer = "zeroshot"
    for manifest in publish_zeroshot(store, built, specs, producer):
        print(f"{manifest.task} {manifest.version} -> backbone {manifest.backbone}")


if __name__ == "__main__":
    main()
