"""Console entry points: ``petseg-train`` and ``petseg-test``.

Each is a function ``main(argv=None)`` returning an exit code, so tests call it in-process. Bad
input (a ``PetsegError``) is printed as one line, ``<prog>: error: <what> <what to do>``, with exit
code 2; ``--verbose`` shows the traceback instead.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from jsonargparse import ArgumentError, ArgumentParser
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from petseg.checkpoints import (
    export_state_dict,
    load_checkpoint,
    module_from_checkpoint,
    saved_image_size,
)
from petseg.compare import find_runs, load_runs, markdown_table, plot_runs
from petseg.data import OxfordPetDataset, PetDataModule
from petseg.data.datamodule import DEFAULT_ROOT, default_workers
from petseg.data.download import ensure_data
from petseg.data.transforms import eval_transform
from petseg.errors import PetsegError
from petseg.inference import evaluate, select_device
from petseg.models import ARCHS
from petseg.module import SegmentationModule
from petseg.predict import collect_inputs, predict_files
from petseg.report import write_metrics, write_overlays, write_per_image

Arch = Literal["unet", "resnet34_unet"]
LAST = "last"  # saved_models/<arch>/last.ckpt, rewritten every epoch; --ckpt_path last resumes it
assert set(Arch.__args__) == set(ARCHS)  # the CLI's choices are the registry's names


def auto_precision(accelerator: str | None) -> str:
    """bf16 mixed precision on a GPU that has it, 16-bit mixed on other GPUs, 32-bit on CPU."""
    if accelerator in (None, "auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def _run(prog: str, argv: list[str] | None, body: Callable[[list[str] | None], int]) -> int:
    verbose = "--verbose" in (sys.argv[1:] if argv is None else argv)
    try:
        return body(argv)
    except (PetsegError, ArgumentError) as err:
        if verbose:
            raise
        message = str(err)
        if "Original Traceback" in message:  # raised in a DataLoader worker: keep its last line
            message = message.strip().splitlines()[-1].split(": ", 1)[-1]
        message = " ".join(message.split())  # jsonargparse's messages span several lines
        hint = f" (see {prog} --help)" if isinstance(err, ArgumentError) else ""
        print(f"{prog}: error: {message}{hint}", file=sys.stderr)
        return 2


def _command_parser(prog: str, description: str) -> ArgumentParser:
    """A parser that raises on bad arguments (``_run`` prints them) and takes ``--verbose``."""
    parser = ArgumentParser(prog=prog, description=description, exit_on_error=False)
    parser.add_argument("--verbose", action="store_true", help="Tracebacks on errors.")
    return parser


def _print_metrics(metrics: dict[str, float]) -> None:
    for key in ("test/dice", "test/dice_dataset", "test/iou", "test/loss"):
        if key in metrics:
            print(f"{key:<18} {float(metrics[key]):.4f}")


class TrainCLI(LightningCLI):
    """LightningCLI with ``--arch``, output folders, resuming and petseg's trainer defaults."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--arch", type=Arch, default="resnet34_unet", help="Architecture to train."
        )
        parser.link_arguments("arch", "model.arch")
        parser.add_argument(
            "--save_dir", default="saved_models", help="Checkpoints go to SAVE_DIR/<arch>/."
        )
        parser.add_argument("--log_dir", default="logs", help="TensorBoard logs: LOG_DIR/<arch>/.")
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="Resume training from this checkpoint ('last' for the run's newest).",
        )
        parser.add_argument("--verbose", type=bool, default=False, help="Tracebacks on errors.")

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        cfg, trainer_cfg = self.config, self.config_init.trainer
        if trainer_cfg.get("precision") is None:
            kwargs["precision"] = auto_precision(trainer_cfg.get("accelerator"))
        if trainer_cfg.get("logger") in (None, True):
            kwargs["logger"] = TensorBoardLogger(cfg.log_dir, name=cfg.arch)
        ckpt_dir = Path(cfg.save_dir) / cfg.arch
        best = ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="epoch{epoch:03d}-dice{val/dice:.4f}",
            auto_insert_metric_name=False,
            monitor="val/dice",
            mode="max",
        )
        # Lightning's save_last only follows top-k saves; this rewrites last.ckpt every epoch.
        last = ModelCheckpoint(dirpath=ckpt_dir, filename=LAST, enable_version_counter=False)
        self.trainer_defaults["callbacks"] = [best, last, LearningRateMonitor("epoch")]
        return super().instantiate_trainer(**kwargs)


def _train(argv: list[str] | None) -> int:
    cli = TrainCLI(
        SegmentationModule,
        PetDataModule,
        run=False,
        args=argv,
        seed_everything_default=42,
        trainer_defaults={"max_epochs": 50},
        auto_configure_optimizers=False,
        parser_kwargs={
            "prog": "petseg-train",
            "exit_on_error": False,
            "description": "Train UNet or ResNet34-UNet on Oxford-IIIT Pet, then test the best "
            "checkpoint. Options can also come from a YAML file (--config configs/full.yaml).",
        },
    )
    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    ckpt_path = cli.config.ckpt_path
    if ckpt_path == "last":
        ckpt_path = Path(cli.config.save_dir) / cli.config.arch / f"{LAST}.ckpt"
    if ckpt_path is not None:  # a clear error before any training starts
        saved_arch = load_checkpoint(ckpt_path)["hyper_parameters"]["arch"]
        if saved_arch != cli.config.arch:
            raise PetsegError(
                f"checkpoint {ckpt_path} is a {saved_arch} checkpoint but --arch is "
                f"{cli.config.arch}; pass --arch {saved_arch} to resume it"
            )
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    best = trainer.checkpoint_callback.best_model_path
    results = trainer.test(model, datamodule=data, ckpt_path=best or None, verbose=False)
    if trainer.is_global_zero:
        print(f"best checkpoint    {best or '(none: no validation ran)'}")
        if best:
            pth = export_state_dict(best, Path(cli.config.save_dir) / f"{cli.config.arch}.pth")
            print(f"best weights       {pth}")
        _print_metrics(results[0] if results else {})
    return 0


def train_main(argv: list[str] | None = None) -> int:
    """``petseg-train``: fit a model, test its best checkpoint, print where it is and its Dice."""
    return _run("petseg-train", argv, _train)


def _test_parser() -> ArgumentParser:
    parser = _command_parser(
        "petseg-test",
        "Evaluate a petseg checkpoint on the test split (annotations/test.txt): mean "
        "per-image Dice, dataset-level Dice and IoU. The architecture and image size come from "
        "the checkpoint.",
    )
    parser.add_argument("--ckpt", required=True, help="A .ckpt written by petseg-train.")
    parser.add_argument("--data.root", default=DEFAULT_ROOT, help="Data root (official layout).")
    parser.add_argument(
        "--data.image_size", type=int | None, default=None, help="Default: the checkpoint's."
    )
    parser.add_argument("--data.batch_size", type=int, default=16, help="Images per batch.")
    parser.add_argument(
        "--data.num_workers", type=int | None, default=None, help="Loader processes."
    )
    parser.add_argument(
        "--data.download", type=bool, default=False, help="Download the data if root is empty."
    )
    parser.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda, cuda:1")
    parser.add_argument(
        "--output",
        type=str | None,
        default=None,
        help="Write metrics.json, per_image.csv and overlays/ (8 best, 8 worst) here.",
    )
    parser.add_argument("--tta", action="store_true", help="Average with the mirrored image.")
    parser.add_argument(
        "--full-res",
        action="store_true",
        help="Also score at each image's original size (logits resized bilinearly).",
    )
    return parser


def _test(argv: list[str] | None) -> int:
    args = _test_parser().parse_args(argv)
    ckpt = load_checkpoint(args.ckpt)
    module = module_from_checkpoint(ckpt)
    image_size = args.data.image_size or saved_image_size(ckpt)
    ensure_data(args.data.root, allow_download=args.data.download)
    dataset = OxfordPetDataset(args.data.root, "test", eval_transform(image_size))
    device = select_device(args.device)
    threshold = module.hparams.threshold
    evaluation = evaluate(
        module.net,
        dataset,
        device,
        batch_size=args.data.batch_size,
        num_workers=default_workers(args.data.num_workers),
        tta=args.tta,
        full_res=args.full_res,
        threshold=threshold,
    )
    arch = module.hparams.arch
    print(f"checkpoint         {args.ckpt} ({arch}, {image_size}px{', TTA' if args.tta else ''})")
    print(f"test images        {len(dataset)}")
    _print_metrics({f"test/{k}": v for k, v in evaluation.summary.items()})
    if evaluation.full_res is not None:
        full = {f"test/{k}": v for k, v in evaluation.full_res.items()}
        print("at original image size:")
        _print_metrics(full)
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        info = {"checkpoint": str(args.ckpt), "arch": arch, "image_size": image_size,
                "tta": args.tta, "threshold": threshold}  # fmt: skip
        write_metrics(out / "metrics.json", evaluation, info)
        write_per_image(out / "per_image.csv", evaluation)
        overlays = write_overlays(
            out / "overlays", module.net, dataset, evaluation, device, tta=args.tta,
            threshold=threshold,
        )  # fmt: skip
        print(f"report             {out}/ (metrics.json, per_image.csv, {len(overlays)} overlays)")
    return 0


def test_main(argv: list[str] | None = None) -> int:
    """``petseg-test --ckpt CKPT``: test a checkpoint and print its Dice and IoU."""
    return _run("petseg-test", argv, _test)


def _predict(argv: list[str] | None) -> int:
    parser = _command_parser(
        "petseg-predict",
        "Segment any images (files or folders; JPEG, PNG, GIF, any mode and size) "
        "with a petseg checkpoint. Writes <name>_mask.png (0 background, 255 pet, at the "
        "image's own size) and <name>_overlay.png per image. Exit code 1 if any input failed.",
    )
    parser.add_argument("--ckpt", required=True, help="A .ckpt written by petseg-train.")
    parser.add_argument("inputs", nargs="+", help="Image files and folders of images.")
    parser.add_argument("--output", required=True, help="Folder for masks and overlays.")
    parser.add_argument("--threshold", type=float, default=0.5, help="Pet probability cut.")
    parser.add_argument("--tta", action="store_true", help="Average with the mirrored image.")
    parser.add_argument("--batch_size", type=int, default=8, help="Images per batch.")
    parser.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda")
    args = parser.parse_args(argv)
    ckpt = load_checkpoint(args.ckpt)
    module = module_from_checkpoint(ckpt)
    image_size = saved_image_size(ckpt)
    files, missing = collect_inputs(args.inputs)
    failed = predict_files(
        module.net, files, Path(args.output), image_size, select_device(args.device),
        batch_size=args.batch_size, tta=args.tta, threshold=args.threshold,
    )  # fmt: skip
    for error in missing + failed:
        print(f"petseg-predict: skipped {error}", file=sys.stderr)
    print(f"wrote masks and overlays of {len(files) - len(failed)} image(s) to {args.output}; "
          f"{len(missing) + len(failed)} skipped")  # fmt: skip
    return 1 if missing or failed else 0


def predict_main(argv: list[str] | None = None) -> int:
    """``petseg-predict --ckpt CKPT INPUT... --output DIR``."""
    return _run("petseg-predict", argv, _predict)


def _compare(argv: list[str] | None) -> int:
    parser = _command_parser(
        "petseg-compare",
        "Compare training runs: one PNG with per-epoch train (dashed) and valid "
        "(solid) Dice and loss of every run on shared axes, and a markdown table (best valid "
        "Dice and its epoch, test Dice where logged). RUN is a run folder (logs/unet/version_0) "
        "or a folder of runs (logs/, logs/unet), where the newest version of each is used.",
    )
    parser.add_argument("runs", nargs="*", default=["logs"], help="Run folders (default: logs).")
    parser.add_argument(
        "--output", default="comparison.png", help="The PNG; the table goes beside it as .md."
    )
    parser.add_argument("--title", default="", help="A title over the plots.")
    args = parser.parse_args(argv)
    runs = load_runs(find_runs(args.runs or ["logs"]))
    png = plot_runs(runs, Path(args.output), args.title)
    table = markdown_table(runs)
    png.with_suffix(".md").write_text(table)
    print(table, end="")
    print(f"curves             {png}\ntable              {png.with_suffix('.md')}")
    return 0


def compare_main(argv: list[str] | None = None) -> int:
    """``petseg-compare [RUN...]``: curves of several runs in one PNG, and a summary table."""
    return _run("petseg-compare", argv, _compare)
