"""``petseg-predict``: masks and overlays of any images, through the ``Segmenter`` API."""

from __future__ import annotations

import sys
from pathlib import Path

from jsonargparse.typing import OpenUnitInterval, PositiveInt

from petseg.cli import command_parser, run_command
from petseg.console import add_checkpoint_options, checkpoint_line
from petseg.postprocess import PostProcess


def parser():
    parser = command_parser(
        "petseg-predict",
        "Segment any images (files or folders searched recursively; JPEG, PNG, GIF, any mode, "
        "size and bit depth, EXIF orientation applied) with a petseg .ckpt or .pth. Writes "
        "<name>_mask.png (0 background, 255 pet, at the image's own size) and "
        "<name>_overlay.png per image, mirroring input folders under --output, and index.csv. "
        "Exit code 1 if any input could not be read.",
    )
    add_checkpoint_options(parser)
    parser.add_argument("inputs", nargs="+", help="Image files and folders of images.")
    parser.add_argument("--output", required=True, help="Folder for masks and overlays.")
    parser.add_argument(
        "--threshold",
        type=OpenUnitInterval | None,
        default=None,
        help="Pet probability cut, between 0 and 1 (default: the checkpoint's).",
    )
    parser.add_argument("--tta", action="store_true", help="Average with the mirrored image.")
    parser.add_argument(
        "--postprocess",
        type=PostProcess,
        default="none",
        help="Post-process each mask: largest (keep the largest pet region), fill (fill its "
        "holes), both, or none.",
    )
    parser.add_argument("--batch_size", type=PositiveInt, default=8, help="Images per batch.")
    parser.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda, cuda:1")
    return parser


def _predict(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    from petseg.errors import PetsegError
    from petseg.files import writable_folder
    from petseg.inference import select_device
    from petseg.predict import check_outputs_free, collect_inputs, predict_files
    from petseg.segmenter import Segmenter

    device = select_device(args.device)  # a bad --device before anything is read or made
    threshold = None if args.threshold is None else float(args.threshold)
    output = Path(args.output)
    jobs, missing = collect_inputs(args.inputs, output)
    if not jobs:
        raise PetsegError(f"no images to segment in {' '.join(args.inputs)}")
    check_outputs_free(jobs, output)
    seg = Segmenter.load(args.ckpt, threshold=threshold, device=device, tta=args.tta,
                         batch_size=args.batch_size, postprocess=args.postprocess,
                         save_dir=args.save_dir, arch=args.arch)  # fmt: skip
    print(checkpoint_line(seg.checkpoint, f"{seg.arch}, {seg.image_size}px",
                          seg.checkpoint_reason))  # fmt: skip
    writable_folder(output, "--output")  # made once the model loads: a bad one leaves none
    failed = predict_files(seg, jobs, output, missing=missing)
    for error in missing + failed:
        print(f"petseg-predict: skipped {error}", file=sys.stderr)
    print(f"wrote masks and overlays of {len(jobs) - len(failed)} image(s) to {output}; "
          f"{len(missing) + len(failed)} skipped")  # fmt: skip
    return 1 if missing or failed else 0


def main(argv: list[str] | None = None) -> int:
    return run_command("petseg-predict", argv, _predict)
