"""Exporting a trained model for deployment: ONNX, TorchScript or ``torch.export``, then checked.

The exported model is the network alone, on the CPU in float32:

    images  float32 (N, 3, S, S): RGB resized to S x S, scaled to 0-1, minus ``mean``, over ``std``
    logits  float32 (N, 1, S, S): pet where sigmoid(logits) > ``threshold``

with a dynamic batch dimension N and S the checkpoint's image size. Preprocessing, resizing the
logits back to an image's own size and the threshold stay with the caller; what they need is in
the file's metadata (``METADATA_FILE`` below, or ONNX ``metadata_props``), read back by
``read_metadata``. Before the file appears, the runtime that will load it (onnxruntime,
``torch.jit.load`` or ``torch.export.load``) runs it on the check images, at batch 1 and in
batches of up to 8 (a single image also beside its mirror image), and its logits must match
PyTorch's within ``TOLERANCE``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import petseg
from petseg.checkpoints import ModelSpec
from petseg.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from petseg.errors import PetsegError
from petseg.files import atomic_write, new_file, writable_folder

# output suffix -> format name
FORMATS = {".onnx": "ONNX", ".pt": "TorchScript", ".ts": "TorchScript", ".pt2": "torch.export"}
TOLERANCE = 1e-3  # largest |runtime - PyTorch| allowed, relative to the largest |PyTorch logit|
METADATA_FILE = "petseg.json"  # TorchScript _extra_files / torch.export extra_files entry
INPUT_NAME, OUTPUT_NAME = "images", "logits"
CHECK_BATCH = 8
# Values of these metadata keys are JSON in ONNX metadata_props (which holds strings only).
_JSON_KEYS = ("model_options", "image_size", "mean", "std", "threshold")
# Modules the ONNX format needs: onnxscript is what torch.onnx.export (dynamo) translates with.
_ONNX_MODULES = ("onnx", "onnxscript", "onnxruntime")
_INSTALL_HINT = "install petseg[export] (pip install onnx onnxruntime onnxscript)"


@dataclass(frozen=True)
class ExportResult:
    """What ``export_model`` wrote and how closely the runtime matched PyTorch."""

    path: Path
    format: str
    metadata: dict[str, Any]
    max_rel_diff: float  # max |runtime - PyTorch| / max |PyTorch| over every check batch
    images: int  # check images
    batch_sizes: tuple[int, ...]  # the batch sizes the check ran
    runtime: str  # what loaded and ran the file for the check


def export_format(output: str | Path) -> str:
    """The format an output name asks for, by its suffix, or a one-line error."""
    suffix = Path(output).suffix
    fmt = FORMATS.get(suffix.lower())
    if fmt is None:
        raise PetsegError(
            f"--output {output}: cannot tell the format from "
            f"{repr(suffix) if suffix else 'a name without a suffix'}; end the name in .onnx "
            "(ONNX), .pt or .ts (TorchScript) or .pt2 (torch.export)"
        )
    return fmt


def check_output(output: str | Path) -> Path:
    """A new file to export to: its format is known and it does not exist (nothing is replaced)."""
    output = Path(output)
    if output.is_dir():
        raise PetsegError(f"--output {output} is a folder; pass a file name such as model.onnx")
    export_format(output)
    return new_file(output)


def require_dependencies(fmt: str) -> None:
    """Fail in one line when a module the format needs is not installed (ONNX needs three)."""
    for name in _ONNX_MODULES if fmt == "ONNX" else ():
        try:
            importlib.import_module(name)
        except ImportError:
            raise PetsegError(
                f"ONNX export needs {name}, which is missing; {_INSTALL_HINT}"
            ) from None


def export_metadata(spec: ModelSpec) -> dict[str, Any]:
    """What a user of the exported file needs besides the network: written into the file."""
    size = spec.image_size
    return {
        "petseg_version": petseg.__version__,
        "arch": spec.arch,
        "model_options": dict(spec.model_options),
        "image_size": size,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "threshold": spec.threshold,
        "input": f"{INPUT_NAME}: float32 (N, 3, {size}, {size}), RGB resized to {size}x{size}, "
        "scaled to 0-1, minus mean, divided by std (per channel)",
        "output": f"{OUTPUT_NAME}: float32 (N, 1, {size}, {size}); pet where "
        "sigmoid(logits) > threshold",
    }


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata ``export_model`` wrote into an exported file (any of the three formats)."""
    path = Path(path)
    fmt = export_format(path)
    if fmt == "ONNX":
        import onnx

        props = {
            p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props
        }
        return {k: json.loads(v) if k in _JSON_KEYS else v for k, v in props.items()}
    files = {METADATA_FILE: ""}
    with _quiet_torchscript():
        if fmt == "TorchScript":
            torch.jit.load(str(path), map_location="cpu", _extra_files=files)
        else:
            torch.export.load(path, extra_files=files)
    text = files[METADATA_FILE]
    return json.loads(text.decode() if isinstance(text, bytes) else text)


def check_images(segmenter: petseg.Segmenter, images: Sequence[str | Path] | None) -> torch.Tensor:
    """Preprocessed check images ``(N, 3, S, S)``: the given image files and folders, or, with
    none, three generated inputs (normal noise at the normalised images' scale)."""
    if not images:
        size = segmenter.image_size
        return torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    from petseg.predict import collect_inputs
    from petseg.segmenter import as_rgb

    jobs, missing = collect_inputs([str(i) for i in images], Path(os.devnull))
    if missing:
        raise PetsegError(f"--images {missing[0]}")
    return torch.stack([segmenter.preprocess(as_rgb(job.source)) for job in jobs])


def export_model(
    ckpt: str | Path, output: str | Path, images: Sequence[str | Path] | None = None
) -> ExportResult:
    """Export the model of a petseg ``.ckpt`` or ``.pth`` to ``output`` and check it.

    Args:
        ckpt: A checkpoint written by ``petseg-train`` (read with ``weights_only=True``).
        output: The new file; its suffix picks the format (``FORMATS``). An existing file is
            refused.
        images: Image files or folders to check the export on (default: 3 generated inputs).

    Raises:
        PetsegError: bad input, a missing export dependency, or a runtime whose logits differ
            from PyTorch's by more than ``TOLERANCE``; ``output`` is then not written.
    """
    output = check_output(output)
    fmt = export_format(output)
    require_dependencies(fmt)
    seg = petseg.Segmenter.load(ckpt, device="cpu")
    inputs = check_images(seg, images)
    metadata = export_metadata(seg.spec)
    writable_folder(output.parent, "--output")
    batches = _check_batches(inputs)
    checked: dict[str, Any] = {}

    def write_and_check(partial: Path) -> None:
        """Export to ``partial``, then run it beside PyTorch; only a model that agrees is kept."""
        _WRITERS[fmt](seg.model, seg.image_size, metadata, partial)
        run, checked["runtime"] = _RUNNERS[fmt](partial)
        diffs = [_relative_difference(_checked(run, batch, fmt, checked["runtime"]),
                                      seg.logits(batch)) for batch in batches]  # fmt: skip
        checked["diff"] = diff = float(torch.tensor(diffs).max())  # NaN if any is
        if not diff <= TOLERANCE:
            raise PetsegError(
                f"the exported {fmt} model's logits differ from PyTorch's by {diff:.2e} "
                f"relative (limit {TOLERANCE:g}) on the {len(inputs)} check input(s); {output} "
                "was not written"
            )
        if output.exists():  # appeared while exporting
            raise PetsegError(f"--output {output} appeared while exporting; it was kept as it is")

    atomic_write(output, write_and_check)
    return ExportResult(
        output,
        fmt,
        metadata,
        checked["diff"],
        len(inputs),
        tuple(len(b) for b in batches),
        checked["runtime"],
    )


def _check_batches(inputs: torch.Tensor) -> list[torch.Tensor]:
    """Batch 1 first, then all inputs in batches of up to 8: two batch sizes, since the batch
    dimension is dynamic (a single image goes beside its mirror image for the second)."""
    if len(inputs) == 1:
        inputs = torch.cat([inputs, inputs.flip(-1)])
    return [inputs[:1], *inputs.split(CHECK_BATCH)]


def _checked(run: Callable, batch: torch.Tensor, fmt: str, runtime: str) -> Any:
    """The runtime's logits of a check batch; its failure (say, a fixed batch size) in one line."""
    try:
        return run(batch)
    except Exception as err:
        text = " ".join(str(err).split()) or type(err).__name__
        text = text if len(text) <= 300 else f"{text[:300]}..."
        raise PetsegError(
            f"the exported {fmt} model fails in {runtime} on a batch of {len(batch)}: {text}"
        ) from None


def _relative_difference(runtime: torch.Tensor | np.ndarray, reference: torch.Tensor) -> float:
    """max |runtime - reference| over max |reference| (elementwise ratios blow up near 0)."""
    got = torch.as_tensor(np.asarray(runtime))
    if got.shape != reference.shape:
        return float("inf")
    return float((got - reference).abs().max() / reference.abs().max().clamp_min(1e-12))


def _example(size: int) -> torch.Tensor:
    # Batch 2, not 1: an example batch of 1 lets the tracers treat the batch size as constant.
    return torch.zeros(2, 3, size, size)


def _batch_dim() -> Any:
    return torch.export.Dim("batch", min=1)


def _write_onnx(model, size: int, metadata: dict[str, Any], path: Path) -> None:
    program = torch.onnx.export(
        model, (_example(size),), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: _batch_dim()},), dynamo=True, verbose=False,
    )  # fmt: skip
    for key, value in metadata.items():
        program.model.metadata_props[key] = json.dumps(value) if key in _JSON_KEYS else value
    program.save(path, external_data=False)  # one self-contained file (petseg models < 2 GB)


@contextlib.contextmanager
def _quiet_torchscript():
    """Hide TorchScript's deprecation notices (README says it) and the tracer's warning about
    the decoders' size check, which is exact for the one image size a model is exported at."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def _write_torchscript(model, size: int, metadata: dict[str, Any], path: Path) -> None:
    with _quiet_torchscript(), torch.no_grad():
        traced = torch.jit.trace(model, _example(size), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={METADATA_FILE: json.dumps(metadata)})


def _write_torch_export(model, size: int, metadata: dict[str, Any], path: Path) -> None:
    program = torch.export.export(model, (_example(size),), dynamic_shapes=({0: _batch_dim()},))
    torch.export.save(program, path, extra_files={METADATA_FILE: json.dumps(metadata)})


def _run_onnx(path: Path) -> tuple[Callable, str]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(images: torch.Tensor) -> np.ndarray:
        return session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0]

    return run, f"onnxruntime {onnxruntime.__version__}"


def _no_grad(module) -> Callable:
    def run(images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(images)

    return run


def _run_torchscript(path: Path) -> tuple[Callable, str]:
    with _quiet_torchscript():
        module = torch.jit.load(str(path), map_location="cpu")
    return _no_grad(module), f"torch.jit.load (torch {torch.__version__})"


def _run_torch_export(path: Path) -> tuple[Callable, str]:
    module = torch.export.load(path).module()
    return _no_grad(module), f"torch.export.load (torch {torch.__version__})"


_WRITERS = {
    "ONNX": _write_onnx,
    "TorchScript": _write_torchscript,
    "torch.export": _write_torch_export,
}
_RUNNERS = {"ONNX": _run_onnx, "TorchScript": _run_torchscript, "torch.export": _run_torch_export}
