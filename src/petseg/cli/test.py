"""``petseg-test``: score a checkpoint on the test split, by the same code as training's test."""

from __future__ import annotations

from jsonargparse.typing import NonNegativeInt, PositiveInt

from petseg.cli import command_parser, run_command
from petseg.console import add_checkpoint_options, checkpoint_line
from petseg.data.defaults import DEFAULT_ROOT
from petseg.postprocess import PostProcess


def parser():
    parser = command_parser(
        "petseg-test",
        "Score a petseg checkpoint (.ckpt or .pth) on the test split (annotations/test.txt): "
        "mean per-image Dice and IoU, dataset-level (pooled) Dice and IoU. The architecture, "
        "image size, threshold and data root come from the checkpoint.",
    )
    add_checkpoint_options(parser)
    parser.add_argument(
        "--data.root",
        type=str | None,
        default=None,
        help="Data root (official layout); default: the one the checkpoint was trained on, "
        f"else {DEFAULT_ROOT}.",
    )
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
        "--full_res",
        "--full-res",  # its spelling until 0.2.0
        action="store_true",
        help="Also score at each image's original size (logits resized bilinearly).",
    )
    return parser


def _test(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    from petseg.data.defaults import default_workers
    from petseg.data.download import ensure_data
    from petseg.files import writable_folder
    from petseg.inference import select_device
    from petseg.report import check_report_folder, score_test_split
    from petseg.segmenter import Segmenter

    device = select_device(args.device)  # a bad --device before anything is read or made
    if args.output:
        check_report_folder(args.output)
    seg = Segmenter.load(
        args.ckpt,
        device=device,
        save_dir=args.save_dir,
        arch=args.arch,
        tta=args.tta,
        batch_size=int(args.data.batch_size),
        postprocess=args.postprocess,
    )
    if args.output:  # made once the model loads: a bad checkpoint leaves no folder
        writable_folder(args.output, "--output")
    root, whence = data_root(args.data.root, seg)
    ensure_data(root, allow_download=args.data.download)
    extras = [", TTA"] if args.tta else []
    extras += [f", post-processing {args.postprocess}"] if args.postprocess != "none" else []
    details = f"{seg.arch}, {seg.image_size}px{''.join(extras)}"
    print(checkpoint_line(seg.checkpoint, details, seg.checkpoint_reason))
    print(f"data               {root} ({whence})")
    score_test_split(
        seg, root, args.output, full_res=args.full_res,
        num_workers=default_workers(
            None if args.data.num_workers is None else int(args.data.num_workers)
        ), info={"checkpoint": str(seg.checkpoint)},
    )  # fmt: skip
    return 0


def data_root(option: str | None, seg) -> tuple[str, str]:
    """The data root to score on, and where it comes from: ``--data.root``, else the one the
    checkpoint was trained on, else the default. A recorded root that is gone is an error."""
    from pathlib import Path

    from petseg.errors import PetsegError

    if option is not None:
        return option, "--data.root"
    recorded = seg.spec.data_root
    if recorded is None:
        return DEFAULT_ROOT, "the default; the checkpoint records no data root"
    if not Path(recorded).is_dir():
        raise PetsegError(
            f"the checkpoint {seg.checkpoint} was trained on {recorded}, which is not a folder "
            "here; pass --data.root"
        )
    return recorded, "the checkpoint's training data; --data.root overrides it"


def main(argv: list[str] | None = None) -> int:
    return run_command("petseg-test", argv, _test)
