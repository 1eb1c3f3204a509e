"""``petseg-sweep``: the command line of ``petseg.sweep``.

The sweep's own options are listed below; every other argument is a ``petseg-train`` option
(``--config`` included) that every trial gets.
"""

from __future__ import annotations

import sys
from pathlib import Path

from petseg.console import command_parser, run_command

# The sweep's options: name -> whether it takes a value (the rest of argv goes to petseg-train).
_OPTIONS = {
    "--space": True,
    "--study": True,
    "--trials": True,
    "--storage": True,
    "--sampler": True,
    "--pruner": True,
    "--seeds": True,
    "--seed": True,
    "--test": True,
    "--sweep_dir": True,
    "--heartbeat": True,
    "--max_failures": True,
    "--summary": False,
    "--output": True,
    "--verbose": False,
    "--help": False,
    "-h": False,
}

DESCRIPTION = """\
Search petseg-train's options with Optuna. Every argument that is not one of the options below
is a petseg-train option (--config included) that every trial gets; each trial adds one value
of every key of --space (--key=value) and --seed_everything=S for each of its --seeds.

  petseg-sweep --space space.yaml --study lr --trials 20 --config configs/quick.yaml \\
      --data.root ../shared/oxford-pet-sample
  petseg-sweep --summary --study lr --output sweeps/lr/summary

Rerunning a command continues its study; workers on several machines share one study through
--storage postgresql://USER:PASSWORD@HOST/DB. Live view: optuna-dashboard STORAGE_URL."""


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the sweep's own arguments, petseg-train's arguments)."""
    own: list[str] = []
    train: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if name in _OPTIONS:
            own.append(arg)
            if _OPTIONS[name] and "=" not in arg and i + 1 < len(argv):
                own.append(argv[i + 1])
                i += 1
            if name == "--verbose":
                train.append(arg)
        else:
            train.append(arg)
        i += 1
    return own, train


def _parser():
    from jsonargparse.typing import PositiveInt

    from petseg.sweep import GRACE, HEARTBEAT, MAX_FAILURES, PRUNERS, SAMPLERS

    parser = command_parser("petseg-sweep", DESCRIPTION)
    parser.add_argument("--space", type=str | None, default=None, help="YAML: option -> range.")
    parser.add_argument("--study", type=str, required=True, help="The study's name.")
    parser.add_argument(
        "--trials",
        type=int | None,  # SweepConfig checks the range (the parser's Union message is long)
        default=None,
        help="The study's total: a worker stops when the study holds this many complete or "
        "pruned trials (default with --sampler grid: every point of the grid once).",
    )
    parser.add_argument(
        "--storage",
        type=str | None,
        default=None,
        help="SQLAlchemy URL of the study's storage (default: SQLite, "
        "SWEEP_DIR/STUDY/study.db); e.g. postgresql://USER:PASSWORD@HOST:5432/DB.",
    )
    parser.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="How to pick values.")
    parser.add_argument(
        "--pruner",
        choices=PRUNERS,
        default="median",
        help="Stops unpromising trials early, on the first seed's validation Dice per epoch.",
    )
    parser.add_argument(
        "--seeds", type=PositiveInt, default=1, help="Runs per trial (objective: mean)."
    )
    parser.add_argument("--seed", type=int, default=42, help="First seed (then SEED+1, ...).")
    parser.add_argument(
        "--test",
        type=bool,
        default=True,
        help="Score each run's best checkpoint on the test split, as petseg-train does.",
    )
    parser.add_argument(
        "--sweep_dir",
        type=str,
        default="sweeps",
        help="The sweep's folder is SWEEP_DIR/STUDY: its SQLite study, and the trials' runs "
        "(saved_models/, logs/) unless --save_dir / --log_dir say otherwise.",
    )
    parser.add_argument(
        "--heartbeat",
        type=PositiveInt,
        default=HEARTBEAT,
        help=f"Seconds between a trial's heartbeats; a trial silent for 3 of them (default "
        f"{GRACE} s) is marked failed, as when its worker was killed.",
    )
    parser.add_argument(
        "--max_failures",
        type=PositiveInt,
        default=MAX_FAILURES,
        help="Stop this worker after this many failed trials in a row.",
    )
    parser.add_argument(
        "--summary",
        action="store_true",
        help="Summarize the study instead of running trials: leaderboard.md/.csv, best.yaml "
        "and plots in --output.",
    )
    parser.add_argument(
        "--output",
        type=str | None,
        default=None,
        help="--summary's folder (default: SWEEP_DIR/STUDY/summary).",
    )
    return parser


def _sweep(argv: list[str] | None) -> int:
    from petseg.errors import PetsegError

    own, train_args = split_argv(sys.argv[1:] if argv is None else list(argv))
    args = _parser().parse_args(own)
    from petseg import sweep

    if args.summary:
        if train_args:
            raise PetsegError(
                f"--summary takes no petseg-train options (got {' '.join(train_args)})"
            )
        folder = sweep.study_dir(args.sweep_dir, args.study)
        storage = args.storage or sweep.default_storage(args.sweep_dir, args.study)
        if args.storage is None and not (folder / "study.db").is_file():
            raise PetsegError(
                f"--study {args.study}: no study at {folder / 'study.db'}; pass --storage URL "
                "or --sweep_dir where the sweep ran"
            )
        study = sweep.load_study(args.study, storage)
        output = Path(args.output) if args.output else folder / "summary"
        written = sweep.summarize(study, output)
        for path in written.values():
            print(f"wrote {path}")
        return 0
    if args.space is None:
        raise PetsegError("--space SPACE.yaml is needed to run a sweep (or pass --summary)")
    if args.output is not None:
        raise PetsegError("--output is --summary's folder; trials' runs go to --save_dir")
    cfg = sweep.SweepConfig(
        space=sweep.load_space(args.space),
        study=args.study,
        trials=args.trials,
        train_args=train_args,
        storage=args.storage,
        sweep_dir=Path(args.sweep_dir),
        sampler=args.sampler,
        pruner=args.pruner,
        seeds=args.seeds,
        seed=args.seed,
        test=args.test,
        heartbeat=args.heartbeat,
        max_failures=args.max_failures,
    )
    return sweep.run_sweep(cfg)


def main(argv: list[str] | None = None) -> int:
    return run_command("petseg-sweep", argv, _sweep)


if __name__ == "__main__":
    raise SystemExit(main())
