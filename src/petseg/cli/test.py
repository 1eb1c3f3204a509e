"""``petseg-test``: score a checkpoint on the test split, by the same code as training's test."""

from __future__ import annotations

from jsonargparse.typing import NonNegativeInt, PositiveInt

from petseg.cli import command_parser, run_command
from petseg.data.defaults import DEFAULT_ROOT
from petseg.postprocess import PostProcess


def parser():
    parser = command_parser(
        "petseg-test",
        "Score a petseg checkpoint (.ckpt or .pth) on the test split (annotations/test.txt): "
        "mean per-image Dice and IoU, dataset-level (pooled) Dice and IoU. The architecture, "
        "image size and threshold come from the checkpoint.",
    )
    parser.add_argument("--ckpt", required=True, help="A .ckpt or .pth written by petseg-train.")
    parser.add_argument("--data.root", default=DEFAULT_ROOT, help="Data root (official layout).")
    parser.add_argument("--data.batch_size", type=PositiveInt, default=16, help="Images per batch.")
    parser.add_argument(
        "--data.num_workers",
        type=NonNegativeInt | None,
        default=None,
        help="Loader processes.",
    )
    parser.add_argument(
        "--data.download", type=bool, default=False, help="Download the data if root is empty."
    )
    parser.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda, cuda:1")
    parser.add_argument(
        "--output",
        type=str | None,
        default=None,
        help="Write metrics.json, per_image.csv and overlays/ (8 best, 8 worst) to this new "
        "folder (one that already holds a report is refused).",
    )
    parser.add_argument("--tta", action="store_true", help="Average with the mirrored image.")
    parser.add_argument(
        "--postprocess",
        type=PostProcess,
        default="none",
        help="Post-process each mask: largest (keep the largest pet region), fill (fill its "
        "holes), both, or none.",
    )
    parser.add_argument(
        "--full-res",
        action="store_true",
        help="Also score at each image's original size (logits resized bilinearly).",
    )
    return parser


def _test(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    from petseg.data.defaults import default_workers
    from petseg.data.download import ensure_data
    from petseg.inference import select_device
    from petseg.report import check_report_folder, score_test_split
    from petseg.runs import check_writable_dir
    from petseg.segmenter import Segmenter

    device = select_device(args.device)  # a bad --device before anything is read or made
    if args.output:
        check_report_folder(args.output)
    seg = Segmenter.load(
        args.ckpt,
        device=device,
        tta=args.tta,
        batch_size=int(args.data.batch_size),
        postprocess=args.postprocess,
    )
    if args.output:  # made once the model loads: a bad checkpoint leaves no folder
        check_writable_dir(args.output, "--output")
    ensure_data(args.data.root, allow_download=args.data.download)
    extras = [", TTA"] if args.tta else []
    extras += [f", post-processing {args.postprocess}"] if args.postprocess != "none" else []
    print(f"checkpoint         {args.ckpt} ({seg.arch}, {seg.image_size}px{''.join(extras)})")
    score_test_split(
        seg, args.data.root, args.output, full_res=args.full_res,
        num_workers=default_workers(
            None if args.data.num_workers is None else int(args.data.num_workers)
        ), info={"checkpoint": str(args.ckpt)},
    )  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("petseg-test", argv, _test)
