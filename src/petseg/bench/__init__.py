"""petseg-bench: throughput, FLOP efficiency, data path and time-to-Dice, printed and as JSON.

Every figure is measured in the same process and run: petseg's two models next to
segmentation-models-pytorch's ``Unet(encoder_name="resnet34")`` (the peer, when installed:
``pip install -e .[bench]``), each training step's FLOPs (``torch.utils.flop_counter``) against
a large matrix product timed on the same device, the standard and the cached data paths
against the model's consumption rate, inference, and on a GPU the time to reach a validation Dice
with ``configs/fast.yaml``. ``petseg-bench peer`` runs the peer training script
(``petseg.bench.peer``) that petseg's quick recipe is compared against.

One module per part: ``throughput`` (training steps, inference), ``flops``, ``data_path``,
``time_to_dice``, ``table`` (the printed summary), ``timing`` (the shared timer), ``peer``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import date
from pathlib import Path

from petseg.recipes import recipe

PEER_COMMAND = "peer"
DEVICE_COMMAND = "device"
REHEARSE_COMMAND = "rehearse"
CURVE_COMMAND = "learning-curve"
# configs/fast.yaml, the file petseg-train --config reads, installed or in the checkout
FAST_CONFIG = recipe("fast.yaml")


def run(args: argparse.Namespace) -> dict:
    """Every part of the benchmark that ``args`` asks for, as one JSON-ready dict."""
    import torch

    from petseg.bench.data_path import data_bench
    from petseg.bench.flops import matmul_flops
    from petseg.bench.peer import import_smp, peer_model
    from petseg.bench.throughput import inference_bench, train_step_bench
    from petseg.errors import PetsegError
    from petseg.inference import select_device
    from petseg.models import ARCHS, build_model

    device = select_device(args.device)
    on_gpu = device.type == "cuda"
    bf16 = on_gpu if args.precision == "auto" else args.precision == "bf16"
    timed_dice = on_gpu and args.root and args.time_to_dice_epochs
    if timed_dice:  # read before minutes of timing, so that a missing file fails at once
        from petseg.bench.time_to_dice import read_config, time_to_dice

        config = read_config(args.config)
    batch = args.batch_size or (64 if on_gpu else 8)
    result: dict = {
        "date": date.today().isoformat(),
        "device": torch.cuda.get_device_name(device) if on_gpu else platform.processor() or "cpu",
        "cpu_threads": torch.get_num_threads(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "image_size": args.image_size,
        "batch_size": batch,
        "precision": "bf16 autocast, channels_last" if bf16 else "fp32",
    }
    result["matmul"] = matmul_flops(device)
    models = {arch: build_model(arch) for arch in ARCHS}
    try:
        models["smp_unet_resnet34"] = peer_model()
        result["versions"]["segmentation_models_pytorch"] = import_smp().__version__
    except PetsegError:  # smp is not installed: petseg's models only
        pass
    result["train"] = {}
    for name, model in models.items():
        print(f"timing training steps of {name} ...", file=sys.stderr)
        stats = train_step_bench(model, device, batch, args.image_size, args.steps, bf16)
        stats["fraction_of_matmul"] = stats["flops_per_s"] / result["matmul"]["flops"]
        result["train"][name] = stats
    if "smp_unet_resnet34" in models:
        peer_rate = result["train"]["smp_unet_resnet34"]["images_per_s"]
        for arch in ARCHS:
            result["train"][arch]["ratio_to_peer"] = (
                result["train"][arch]["images_per_s"] / peer_rate
            )
    result["inference"] = {
        arch: inference_bench(models[arch], device, batch, args.image_size, args.steps)
        for arch in ARCHS
    }
    if args.root:
        print("timing the data paths ...", file=sys.stderr)
        data = data_bench(
            args.root, args.image_size, batch, device, args.data_batches, args.cache_dir
        )
        consumption = result["train"]["resnet34_unet"]["images_per_s"]
        data["model_consumes_images_per_s (resnet34_unet)"] = consumption
        data["standard_over_consumption"] = data["standard_images_per_s"] / consumption
        data["cached_over_consumption"] = data["cached_images_per_s"] / consumption
        result["data"] = data
        if timed_dice:
            print("training resnet34_unet to time the validation Dice ...", file=sys.stderr)
            result["time_to_dice"] = time_to_dice(
                args.root, "resnet34_unet", args.time_to_dice_epochs, config, args.cache_dir
            )
    return result


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="petseg-bench",
        description=__doc__.split("\n")[0],
        epilog=f"petseg-bench {PEER_COMMAND} --help: the peer training run (petseg.bench.peer); "
        f"petseg-bench {DEVICE_COMMAND} --help: the one-call GPU check (petseg.bench.device); "
        f"petseg-bench {REHEARSE_COMMAND} --help: a full-size rehearsal dataset "
        "(petseg.bench.rehearse); "
        f"petseg-bench {CURVE_COMMAND} --help: fit and plot a learning curve.",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--image_size", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=None, help="default: 8 CPU, 64 GPU")
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="training steps in float32, or channels-last under bf16 autocast (auto: bf16 on a "
        "GPU, fp32 on the CPU; bf16 on a CPU is fast where it has AMX or AVX-512 bf16 units)",
    )
    parser.add_argument("--steps", type=int, default=3, help="timed repeats (median taken)")
    parser.add_argument("--root", default=None, help="real data for the data and Dice parts")
    parser.add_argument("--data_batches", type=int, default=10)
    parser.add_argument("--cache_dir", default="dataset/cache", help="for the cached data path")
    parser.add_argument("--time_to_dice_epochs", type=int, default=40, help="0 to skip (GPU)")
    parser.add_argument(
        "--config",
        default=str(FAST_CONFIG),
        help="the petseg-train config the time-to-Dice run trains with (default: %(default)s)",
    )
    parser.add_argument("--output", default="bench.json", help="JSON results")
    parser.add_argument("--verbose", action="store_true", help="Tracebacks on errors.")
    return parser


def _bench(argv: list[str] | None) -> int:
    from petseg.bench.table import format_table

    args = parser().parse_args(argv)
    result = run(args)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(format_table(result))
    print(f"\nwrote {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``petseg-bench``: print the benchmark table and write it as JSON;
    ``petseg-bench peer ...``: the peer training run; ``petseg-bench device ...``: the GPU
    check; ``petseg-bench rehearse DIR``: a full-size rehearsal dataset;
    ``petseg-bench learning-curve ...``: a learning curve."""
    from petseg.console import run_command

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == [CURVE_COMMAND]:
        from petseg.bench import learning_curve

        return learning_curve.main(argv[1:])
    if argv[:1] == [PEER_COMMAND]:
        from petseg.bench import peer

        return peer.main(argv[1:], prog=f"petseg-bench {PEER_COMMAND}")
    if argv[:1] == [DEVICE_COMMAND]:
        from petseg.bench import device

        return device.main(argv[1:], prog=f"petseg-bench {DEVICE_COMMAND}")
    if argv[:1] == [REHEARSE_COMMAND]:
        from petseg.bench import rehearse

        return rehearse.main(argv[1:], prog=f"petseg-bench {REHEARSE_COMMAND}")
    return run_command("petseg-bench", argv, _bench)
