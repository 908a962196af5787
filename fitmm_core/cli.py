"""The ``fitmm`` command line: the pipeline's stages without Dagster, calling the same functions.

    fitmm demo-data --out DIR [--seed S]
    fitmm prepare --format amazon2018 --reviews PATH --meta PATH [--images DIR] --out DIR
    fitmm encode --data DIR [--text-encoder NAME] [--image-encoder NAME] [--image-decode auto]
    fitmm train --data DIR --model fitmm [--device auto] [--max-epochs N] [--set key=value ...]
    fitmm recommend --model-dir DIR --users 0,1,2 [--k 10]

``train`` ends its output with one JSON line (model, best_epoch, valid, test, seconds per epoch).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

FORMATS = ("amazon2014", "amazon2018", "amazon2023", "mmrec")
# features.image_decode.IMAGE_DECODERS, spelled out so that `fitmm --help` does not import torch
IMAGE_DECODERS = ("auto", "pil", "nvjpeg")


def _parse_settings(pairs: list[str]) -> dict[str, str]:
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {pair!r}: expected key=value, e.g. --set num_bands=4")
        settings[key.strip()] = value.strip()
    return settings


def cmd_demo_data(args: argparse.Namespace) -> None:
    from fitmm_core.data.demo import generate_demo_data

    summary = generate_demo_data(Path(args.out), seed=args.seed, n_users=args.users, n_items=args.items)
    print(json.dumps(summary, default=str))


def cmd_prepare(args: argparse.Namespace) -> None:
    from fitmm_core.data.prepare import PrepareSettings, prepare_dataset

    out = Path(args.out)
    settings = PrepareSettings(
        format=args.format,
        reviews=args.reviews,
        meta=args.meta,
        images=Path(args.images) if args.images else None,
        out=out,
        name=args.name or out.name,
        k_core=args.k_core,
        seed=args.seed,
        split=args.split,
        require_metadata=not args.keep_items_without_metadata,
        on_bad_lines=args.on_bad_lines,
        **({"text_template": args.text_template} if args.text_template is not None else {}),
    )
    manifest = prepare_dataset(settings)
    print(json.dumps(manifest.get("counts", manifest), default=str))


def cmd_encode(args: argparse.Namespace) -> None:
    from fitmm_core.features.encode import encode_dataset

    report = encode_dataset(
        Path(args.data),
        text_encoder=args.text_encoder,
        image_encoder=args.image_encoder,
        device=args.device,
        batch_size=args.batch_size,
        modalities=tuple(args.modalities.split(",")),
        image_decode=args.image_decode,
    )
    print(json.dumps(report, default=str))


def cmd_train(args: argparse.Namespace) -> None:
    from fitmm_core.bundle import save_bundle
    from fitmm_core.data.mmrec_format import load_mmrec, read_item_ids
    from fitmm_core.models import MODELS, build_model, resolve_settings
    from fitmm_core.models.base import ModelInputs
    from fitmm_core.training.trainer import TrainConfig, fit

    if args.model not in MODELS:
        raise ValueError(f"--model {args.model!r}: unknown; choose one of {sorted(MODELS)}")
    data = load_mmrec(Path(args.data), args.name)
    settings = resolve_settings(args.model, _parse_settings(args.set))
    inputs = ModelInputs(data.n_users, data.n_items, data.train, data.features)
    model = build_model(args.model, inputs, settings, seed=args.seed)
    config = TrainConfig(
        max_epochs=args.max_epochs,
        patience=args.patience,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate or MODELS[args.model].learning_rate,
        seed=args.seed,
        device=args.device,
        checkpoint_dir=Path(args.checkpoint_dir) if args.checkpoint_dir else None,
        mmrec_compat=args.mmrec_compat,
    )
    logging.getLogger("fitmm_core").info(
        "%s on %s: %d users, %d items, %d/%d/%d interactions, modalities %s",
        args.model, data.name, data.n_users, data.n_items, len(data.train), len(data.valid), len(data.test),
        sorted(data.features) or "none",
    )
    result = fit(model, data, config)
    if args.out:
        item_ids = read_item_ids(Path(args.data), data.n_items)
        save_bundle(Path(args.out), args.model, settings, result.model, inputs, item_ids, extra={"dataset": data.name})
    print(json.dumps(result.summary(args.model)))


def cmd_recommend(args: argparse.Namespace) -> None:
    from fitmm_core.bundle import load_bundle, recommend

    bundle = load_bundle(Path(args.model_dir))
    users = [int(u) for u in args.users.split(",") if u.strip()]
    items, scores = recommend(bundle, users, args.k)
    for user, row, row_scores in zip(users, items, scores):
        ranked = [
            {"item_id": int(i), "asin": bundle.item_ids[i], "score": round(float(s), 5)} for i, s in zip(row, row_scores)
        ]
        print(json.dumps({"user_id": user, "items": ranked}))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fitmm", description="FITMM-pipeline command line.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo-data", help="write the synthetic Amazon-2018-format demo dataset")
    demo.add_argument("--out", required=True)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--users", type=int, default=1200)
    demo.add_argument("--items", type=int, default=600)
    demo.set_defaults(func=cmd_demo_data)

    prepare = commands.add_parser("prepare", help="raw reviews + metadata -> MMRec-format folder")
    prepare.add_argument("--format", required=True, choices=FORMATS)
    prepare.add_argument("--reviews", required=True, help="reviews file/URL (or MMRec folder for --format mmrec)")
    prepare.add_argument("--meta", help="metadata file or URL")
    prepare.add_argument("--images", help="folder of <asin>.jpg images (else the metadata's image URLs)")
    prepare.add_argument("--out", required=True)
    prepare.add_argument("--name", help="dataset name (default: the --out folder's name)")
    prepare.add_argument("--k-core", type=int, default=5)
    prepare.add_argument("--seed", type=int, default=999)
    prepare.add_argument("--split", choices=("random", "temporal"), default="random")
    prepare.add_argument("--on-bad-lines", choices=("error", "skip"), default="error")
    prepare.add_argument("--text-template", default=None,
                         help="item text, a str.format template over asin, title, brand, categories, description "
                              "and features (default: '{title} {brand} {categories} {description}')")
    prepare.add_argument("--keep-items-without-metadata", action="store_true")
    prepare.set_defaults(func=cmd_prepare)

    encode = commands.add_parser("encode", help="write text_feat.npy and image_feat.npy")
    encode.add_argument("--data", required=True)
    encode.add_argument("--text-encoder", default="sentence-transformers/all-MiniLM-L6-v2")
    encode.add_argument("--image-encoder", default="clip:openai/clip-vit-base-patch32",
                        help="clip:<hub id or folder>, or efficientnet-lite0 (bundled, offline)")
    encode.add_argument("--modalities", default="text,image")
    encode.add_argument("--device", default="auto")
    encode.add_argument("--batch-size", type=int, default=64)
    encode.add_argument("--image-decode", default="auto", choices=IMAGE_DECODERS,
                        help="JPEG decoding: nvjpeg on the GPU, pil in CPU worker processes, or auto "
                             "(nvjpeg when the encoder runs on CUDA and torchvision is installed)")
    encode.set_defaults(func=cmd_encode)

    train = commands.add_parser("train", help="train and evaluate one model on an MMRec-format folder")
    train.add_argument("--data", required=True)
    train.add_argument("--name", help="dataset name when the folder holds several .inter files")
    train.add_argument("--model", required=True, help="fitmm, lightgcn, freedom or mostpop")
    train.add_argument("--device", default="auto")
    train.add_argument("--max-epochs", type=int, default=1000)
    train.add_argument("--patience", type=int, default=20)
    train.add_argument("--batch-size", type=int, default=2048)
    train.add_argument("--learning-rate", type=float)
    train.add_argument("--seed", type=int, default=999)
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model setting")
    train.add_argument("--checkpoint-dir", help="write a checkpoint per epoch here and resume from it")
    train.add_argument("--mmrec-compat", action="store_true", help="MMRec's test masking (valid items unmasked)")
    train.add_argument("--out", help="save the trained model bundle here (for fitmm recommend)")
    train.set_defaults(func=cmd_train)

    rec = commands.add_parser("recommend", help="top-k unseen items for user ids from a saved bundle")
    rec.add_argument("--model-dir", required=True)
    rec.add_argument("--users", required=True, help="comma-separated contiguous user ids")
    rec.add_argument("--k", type=int, default=10)
    rec.set_defaults(func=cmd_recommend)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"fitmm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
