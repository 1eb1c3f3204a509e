"""Plant small bugs in petseg's promised behaviours, one at a time, and see which the tests catch.

Each mutant is an exact text replacement in one file of ``src/petseg`` and the tests that cover
that behaviour. For each mutant this script copies ``src/`` to a temporary folder, applies the
replacement there (the checkout is never modified), and runs the listed tests with
``python -m pytest -x -q`` and ``PYTHONPATH`` pointing at the mutated copy, under a time limit.
A mutant is *caught* when the tests fail, *survived* when they pass, and *timeout* when they
ran past the limit (a test that hangs on a bug instead of failing: give it a bound). A mutant
whose old text is no longer in the file is *stale*: update its entry after changing the code.

    python tools/mutants.py                  # all mutants, a table at the end
    python tools/mutants.py --list           # their names
    python tools/mutants.py best-ckpt-min precision-swap   # some of them, by name
    python tools/mutants.py --baseline       # the listed tests on the unmutated code first

It exits 1 when a mutant survives, is stale or times out. It is not part of CI: a full run
trains small models many times (about 15-25 minutes on 2 CPU cores). See docs/testing.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str  # relative to src/petseg
    edits: tuple[tuple[str, str], ...]  # (exact old text, new text), each old text found once
    tests: tuple[str, ...]  # pytest node ids or files, relative to the checkout
    what: str


def M(name: str, file: str, edits, tests, what: str) -> Mutant:
    if isinstance(edits[0], str):
        edits = (edits,)
    return Mutant(name, file, tuple(edits), tuple(tests), what)


B = "tests/test_behaviours.py"

MUTANTS = [
    # -- the mutants that the suite let through before tests/test_behaviours.py ---------------
    M("best-ckpt-min", "training.py", ('mode="max"', 'mode="min"'),
      [f"{B}::test_the_checkpoint_kept_is_the_best_validation_dice", "tests/test_training.py"],
      "checkpoint on the worst validation Dice"),
    M("best-ckpt-on-loss", "training.py", ('monitor="val/dice"', 'monitor="val/loss"'),
      [f"{B}::test_the_checkpoint_kept_is_the_best_validation_dice", "tests/test_training.py"],
      "checkpoint on the highest validation loss"),
    M("best-ckpt-is-last", "training.py",
      ("best = callback.best_model_path", "best = str(cli.run.ckpt_dir / LAST)"),
      [f"{B}::test_the_checkpoint_kept_is_the_best_validation_dice"],
      "the last epoch's checkpoint reported and exported as the best"),
    M("runs-share-a-folder", "runs.py",
      [("default=-1) + 1", "default=0)"),
       ('/ f"version_{version}").mkdir()', '/ f"version_{version}").mkdir(exist_ok=True)')],
      [f"{B}::test_two_runs_never_share_a_folder"], "a second run writes into the first's folder"),
    M("dataset-mask-own-draw", "data/dataset.py",
      ('out = self.transform(image=image, mask=mask)\n        return out["image"], out["mask"]',
       'out = self.transform(image=image, mask=mask)\n'
       '        return out["image"], self.transform(image=image, mask=mask)["mask"]'),
      [f"{B}::test_image_and_mask_share_their_geometry_on_the_standard_path"],
      "the uncached path augments the mask with its own random draw"),
    M("test-split-checked-after-fit", "data/datamodule.py",
      ('if stage == "fit" and "test" not in self.datasets:',
       'if stage == "test" and "test" not in self.datasets:'),
      ["tests/test_robustness.py::test_a_bad_test_file_stops_training_before_the_fit_or_is_skipped"],
      "a bad test file found only after the whole fit"),
    M("precision-swap-gpu", "precision.py",
      ('"bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"',
       '"16-mixed" if torch.cuda.is_bf16_supported() else "bf16-mixed"'),
      [f"{B}::test_the_gpu_precision_pick"], "bf16 where unsupported, 16-mixed where bf16 works"),
    M("bce-dice-is-bce", "losses.py",
      ("return bce + self.dice_weight * soft_dice_loss(logits, target)", "return bce"),
      [f"{B}::test_bce_dice_is_bce_plus_weighted_soft_dice", "tests/test_metrics.py"],
      "BCE+Dice returns BCE alone"),
    M("soft-dice-pooled", "losses.py",
      ("inter = (probs * target).sum(1)\n    total = probs.sum(1) + target.sum(1)",
       "inter = (probs * target).sum()\n    total = probs.sum() + target.sum()"),
      [f"{B}::test_soft_dice_loss_is_per_image", "tests/test_metrics.py"],
      "soft Dice pooled over the batch"),
    M("load-threshold-ignored", "segmenter.py",
      ("        if threshold is not None:\n            spec = ModelSpec(",
       "        if False:\n            spec = ModelSpec("),
      [f"{B}::test_segmenter_load_threshold_sets_the_cut", "tests/test_api.py"],
      "Segmenter.load(threshold=...) ignored"),
    M("predict-threshold-ignored", "cli/predict.py",
      ("threshold=args.threshold, device", "threshold=None, device"),
      [f"{B}::test_predict_threshold_and_tta_change_the_masks", "tests/test_outputs.py"],
      "petseg-predict --threshold ignored"),
    M("predict-tta-ignored", "cli/predict.py", ("tta=args.tta,", "tta=False,"),
      [f"{B}::test_predict_threshold_and_tta_change_the_masks", "tests/test_outputs.py"],
      "petseg-predict --tta ignored"),
    M("train-metrics-threshold-ignored", "module.py",
      ('BinarySegmentationScores(threshold) for s in STAGES',
       'BinarySegmentationScores() for s in STAGES'),
      [f"{B}::test_validation_dice_uses_the_model_threshold"],
      "training metrics ignore --model.threshold"),
    M("validation-augmented", "data/datamodule.py",
      ('if split == "train"\n', 'if split != "test"\n'),
      [f"{B}::test_validation_images_are_not_augmented", "tests/test_data.py"],
      "validation images augmented"),
    M("full-res-model-size-mask", "segmenter.py",
      ('original = torch.from_numpy(mask) if self.with_original else None',
       'original = out["mask"] if self.with_original else None'),
      [f"{B}::test_full_res_scores_the_original_size_mask", "tests/test_outputs.py"],
      "--full-res scores against the model-size mask"),
    M("cache-unpickles", "data/cache.py",
      ('data = torch.load(path, map_location="cpu", weights_only=True)',
       'data = torch.load(path, map_location="cpu", weights_only=False)'),
      [f"{B}::test_a_cache_file_is_never_unpickled", "tests/test_fast.py"],
      "the cache loaded with weights_only=False"),
    M("exponential-per-batch", "optim.py",
      ('return {"scheduler": torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)}',
       'return {"scheduler": torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma), '
       '"interval": "step"}'),
      [f"{B}::test_the_exponential_schedule_steps_once_per_epoch", "tests/test_optim.py"],
      "the exponential scheduler steps per batch"),
    # -- mutants the suite already caught (kept so that it goes on catching them) -------------
    M("split-rule", "data/dataset.py", ("i % VALID_EVERY == 0]", "i % VALID_EVERY == 1]"),
      ["tests/test_data.py::test_split_rule_every_tenth_trainval_line_is_valid"],
      "valid is not every 10th trainval line"),
    M("trimap-border-background", "data/dataset.py",
      ("PET_TRIMAP_VALUES = (1, 3)", "PET_TRIMAP_VALUES = (1,)"),
      ["tests/test_data.py::test_trimap_mapping_pet_and_border_are_foreground"],
      "the trimap's border counted as background"),
    M("dice-pooled", "metrics.py", ('"dice": per_image["dice"].mean(),',
                                    '"dice": _ratio(2 * inter, total_sum),'),
      ["tests/test_metrics.py"], "Dice pooled over the dataset, not per image"),
    M("pth-from-last", "training.py",
      ("pth = export_weights(best, cli.run.ckpt_dir",
       "pth = export_weights(cli.run.ckpt_dir / LAST, cli.run.ckpt_dir"),
      [f"{B}::test_the_checkpoint_kept_is_the_best_validation_dice"],
      "the .pth holds the last epoch's weights, not the best"),
    M("checkpoint-unpickles", "checkpoints.py",
      ('return torch.load(path, map_location="cpu", weights_only=True)',
       'return torch.load(path, map_location="cpu", weights_only=False)'),
      ["tests/test_trust.py::test_crafted_checkpoint_never_runs"], "checkpoints unpickled"),
    M("resume-ignored", "training.py",
      ("ckpt_path=cli.resume, weights_only", "ckpt_path=None, weights_only"),
      ["tests/test_cli.py::test_resume_last_continues_the_same_run"],
      "--ckpt_path does not resume"),
    M("batched-mask-own-draw", "data/gpu_augment.py",
      ("    x, m = augmenter(images.float() / 255.0, masks[:, None].float())",
       "    x, _ = augmenter(images.float() / 255.0, masks[:, None].float())\n"
       "    _, m = augmenter(images.float() / 255.0, masks[:, None].float())"),
      ["tests/test_fast.py::test_masks_stay_on_their_pixels_on_both_paths"],
      "the cached path augments the mask with its own draw"),
    M("exif-ignored", "data/dataset.py",
      ("exif_transpose(img) if exif else img", "img"),
      ["tests/test_outputs.py::test_predict_applies_exif_orientation", "tests/test_api.py"],
      "EXIF orientation ignored"),
    M("export-parity-unchecked", "export.py", ("if not diff <= TOLERANCE:", "if False:"),
      ["tests/test_export.py::test_a_runtime_that_disagrees_is_an_error_and_nothing_is_written"],
      "an export whose logits differ is written"),
    M("schedule-ignores-time", "optim.py",
      ("        if self.budget_spent is not None:\n            # The cycle",
       "        if False:\n            # The cycle"),
      ["tests/test_optim.py"], "one-cycle does not follow the time budget"),
    M("precision-cpu-swap", "precision.py",
      ('"bf16-mixed" if cpu_has_amx() else "32-true"',
       '"32-true" if cpu_has_amx() else "bf16-mixed"'),
      ["tests/test_cli.py::test_cpu_bf16_only_where_it_has_amx",
       f"{B}::test_the_gpu_precision_pick"],
      "the CPU precision pick swapped"),
]  # fmt: skip


def apply(mutant: Mutant, src: Path) -> None:
    path = src / "petseg" / mutant.file
    text = path.read_text()
    for old, new in mutant.edits:
        if text.count(old) != 1:
            raise LookupError(f"{mutant.file}: {old!r} found {text.count(old)} times, not once")
        text = text.replace(old, new)
    path.write_text(text)


def run_tests(tests: tuple[str, ...], src: Path, timeout: float) -> tuple[str, float, str]:
    env = dict(os.environ, PYTHONPATH=str(src))
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    start = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - start, ""
    tail = (done.stdout + done.stderr).strip().splitlines()
    # pytest exits 1 when tests failed; 2-5 mean an error before any verdict (a test missing)
    status = {0: "passed", 1: "caught"}.get(done.returncode, f"error {done.returncode}")
    return status, time.monotonic() - start, tail[-1] if tail else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="Mutants to run (default: all).")
    parser.add_argument("--list", action="store_true", help="List the mutants and exit.")
    parser.add_argument("--timeout", type=float, default=600, help="Seconds per mutant.")
    parser.add_argument("--baseline", action="store_true",
                        help="First run each mutant's tests on the unmutated code.")  # fmt: skip
    args = parser.parse_args(argv)
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:34} {m.file:20} {m.what}")
        return 0
    unknown = set(args.names) - {m.name for m in MUTANTS}
    if unknown:
        parser.error(f"unknown mutants: {', '.join(sorted(unknown))}")
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    rows = []
    with tempfile.TemporaryDirectory(prefix="petseg-mutants-") as tmp:
        for mutant in chosen:
            src = Path(tmp) / mutant.name
            shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
            if args.baseline:
                status, _, tail = run_tests(mutant.tests, src, args.timeout)
                if status != "passed":
                    print(f"{mutant.name}: the tests fail WITHOUT the mutant: {tail}", flush=True)
            try:
                apply(mutant, src)
            except LookupError as err:
                rows.append((mutant, "stale", 0.0, str(err)))
                print(f"{mutant.name:34} stale    {err}", flush=True)
                continue
            status, seconds, tail = run_tests(mutant.tests, src, args.timeout)
            status = {"passed": "SURVIVED"}.get(status, status)
            rows.append((mutant, status, seconds, tail))
            print(f"{mutant.name:34} {status:8} {seconds:6.0f} s  {tail[:80]}", flush=True)
    print("\n| mutant | what | result | seconds |\n|---|---|---|---|")
    for mutant, status, seconds, _ in rows:
        print(f"| {mutant.name} | {mutant.what} | {status} | {seconds:.0f} |")
    return int(any(status != "caught" for _, status, _, _ in rows))


if __name__ == "__main__":
    raise SystemExit(main())
