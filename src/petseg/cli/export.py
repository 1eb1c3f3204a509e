"""``petseg-export``: a trained model as an ONNX, TorchScript or ``torch.export`` file, checked."""

from __future__ import annotations

from petseg.cli import command_parser, run_command
from petseg.console import add_checkpoint_options, checkpoint_line


def parser():
    parser = command_parser(
        "petseg-export",
        "Export a petseg checkpoint (.ckpt or .pth) for deployment, on the CPU in float32. The "
        "file takes normalised images float32 (N, 3, S, S) and returns logits float32 "
        "(N, 1, S, S), N dynamic, S the checkpoint's image size; the image size, mean/std, "
        "threshold and architecture are in its metadata (ONNX metadata_props; petseg.json in "
        "TorchScript's and torch.export's extra files). Before it is written, the runtime that "
        "loads it (onnxruntime, torch.jit.load, torch.export.load) must give PyTorch's logits "
        "within 1e-3 relative (max |difference| / max |logit|), at batch 1 and in batches of "
        "up to 8 (a single image also beside its mirror image); otherwise it is an error and "
        "nothing is written.",
    )
    add_checkpoint_options(parser)
    parser.add_argument(
        "--output",
        required=True,
        help="The new file; its suffix picks the format: .onnx (ONNX, needs petseg[export]), "
        ".pt or .ts (TorchScript, torch.jit.trace), .pt2 (torch.export). An existing file is "
        "refused.",
    )
    parser.add_argument(
        "--images",
        nargs="+",
        default=None,
        help="Image files or folders (searched recursively) to check the export on, "
        "preprocessed as petseg-predict does (default: 3 generated inputs).",
    )
    return parser


def _export(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    from petseg.export import export_model
    from petseg.runs import resolve_checkpoint

    ckpt, reason = resolve_checkpoint(args.ckpt, args.save_dir, args.arch)
    result = export_model(ckpt, args.output, args.images)
    meta, size = result.metadata, result.metadata["image_size"]
    n = result.images
    what = f"{n} image{'s' * (n != 1)}" if args.images else f"{n} generated inputs"
    batches = ", ".join(map(str, result.batch_sizes))
    details = f"{meta['arch']}, {size}px, threshold {meta['threshold']}"
    print(checkpoint_line(ckpt, details, reason))
    print(f"exported           {result.path} ({result.format}, "
          f"{result.path.stat().st_size / 1e6:.1f} MB)")  # fmt: skip
    print(f"takes              {meta['input']}")
    print(f"returns            {meta['output']}; N is dynamic")
    print(f"check              {result.runtime} vs PyTorch on {what}, batches of {batches}")
    print(f"max relative diff  {result.max_rel_diff:.2e} (limit 1e-3)")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("petseg-export", argv, _export)
