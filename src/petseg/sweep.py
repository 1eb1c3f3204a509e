"""Sweeps on Optuna: many ``petseg.train`` runs that search a space of ``petseg-train`` options.

A sweep is an Optuna study. Each trial takes one value per key of the space (``model.lr``,
``data.augment``, ``data.train_limit``...), trains ``seeds`` runs of ``petseg-train`` with the
sweep's base options + ``--key=value`` + ``--seed_everything=S``, and its objective is the mean
of their best validation Dice (the standard deviation is kept with the trial). The first seed
reports its validation Dice every epoch, and the pruner may stop it there.

The study lives in Optuna's relational storage: SQLite in the sweep's folder by default, or any
SQLAlchemy URL (PostgreSQL) that workers on several machines share. Workers stop when the study
holds ``trials`` complete or pruned trials, so reruns and several workers share the count; a
killed worker's trial is marked failed by the heartbeat of the next worker (``HEARTBEAT``
seconds, failed after ``GRACE``), and a failed trial records its one-line reason.

``summarize`` writes a leaderboard (markdown, CSV), ``best.yaml`` for ``petseg-train --config``,
and plots.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import socket
import statistics
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from jsonargparse.typing import PositiveInt

from petseg.errors import PetsegError, first_line

SamplerName = Literal["tpe", "random", "grid"]
PrunerName = Literal["median", "hyperband", "none"]
SAMPLERS, PRUNERS = get_args(SamplerName), get_args(PrunerName)
HEARTBEAT = 10  # seconds between a running trial's heartbeats
GRACE = 30  # a RUNNING trial without a heartbeat for this long is marked failed
MAX_FAILURES = 3  # a worker stops after this many failed trials in a row
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SPEC_FIELDS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}
_ARGS_WARNING = "LightningCLI's args parameter"  # the sweep's argv is not petseg-train's
_OWN_OPTIONS = {  # petseg-train options a sweep sets itself
    "seed_everything": "the sweep sets each run's seed: use --seeds K (and --seed S)",
    "ckpt_path": "a sweep trains new runs; it cannot resume a checkpoint",
}


@dataclass
class SweepConfig:
    """What ``petseg-sweep`` was asked (see ``petseg.cli.sweep`` for the options)."""

    space: dict[str, dict[str, Any]]
    study: str
    trials: PositiveInt | None
    train_args: list[str] = field(default_factory=list)
    storage: str | None = None
    sweep_dir: Path = Path("sweeps")
    sampler: SamplerName = "tpe"
    pruner: PrunerName = "median"
    seeds: PositiveInt = 1
    seed: int = 42
    test: bool = True
    heartbeat: PositiveInt = HEARTBEAT
    max_failures: PositiveInt = MAX_FAILURES

    def __post_init__(self) -> None:
        # the parser checks these while parsing; this covers Python callers, from the same types
        from petseg.options import check_arguments  # imports torch: not for --help

        check_arguments(SweepConfig, vars(self), prefix="")


# --- the space ---------------------------------------------------------------------------------


def load_space(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read and check a space file: ``{option: {type: float|int|categorical, ...}}``."""
    path = Path(path)
    if not path.is_file():
        raise PetsegError(f"--space {path}: no such file; pass a YAML file of options to search")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise PetsegError(f"--space {path} is not valid YAML ({_flat(err)})") from None
    return check_space(raw, f"--space {path}")


def check_space(raw: Any, where: str = "space") -> dict[str, dict[str, Any]]:
    """The space as ``{key: spec}``, or a one-line ``PetsegError`` saying what is wrong."""
    if not isinstance(raw, Mapping) or not raw:
        raise PetsegError(
            f"{where}: expected a mapping of petseg-train options to ranges, such as "
            "'model.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}'"
        )
    space: dict[str, dict[str, Any]] = {}
    for key, spec in raw.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][\w.]*", key):
            raise PetsegError(
                f"{where}: {key!r} is not an option name; write petseg-train's options without "
                "dashes, such as model.lr"
            )
        if key in _OWN_OPTIONS:
            raise PetsegError(f"{where}: {key} cannot be searched; {_OWN_OPTIONS[key]}")
        space[key] = _check_spec(key, spec, where)
    return space


def _check_spec(key: str, spec: Any, where: str) -> dict[str, Any]:
    kind = spec.get("type") if isinstance(spec, Mapping) else None
    if kind not in _SPEC_FIELDS:
        raise PetsegError(
            f"{where}: {key} needs a mapping with 'type: float', 'type: int' or "
            f"'type: categorical', not {spec!r}"
        )
    unknown = set(spec) - _SPEC_FIELDS[kind]
    if unknown:
        raise PetsegError(
            f"{where}: {key} has unknown field(s) {', '.join(sorted(map(str, unknown)))}; a "
            f"{kind} takes {', '.join(sorted(_SPEC_FIELDS[kind] - {'type'}))}"
        )
    spec = dict(spec)
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise PetsegError(f"{where}: {key} needs 'choices', a non-empty list")
        for choice in choices:
            if not (choice is None or isinstance(choice, (str, int, float, bool))):
                raise PetsegError(
                    f"{where}: {key}: choice {choice!r} is not a number, string, boolean or null"
                )
        if len(set(map(json.dumps, choices))) != len(choices):
            raise PetsegError(f"{where}: {key} lists a choice twice")
        return spec
    number = int if kind == "int" else (int, float)
    for bound in ("low", "high"):
        value = spec.get(bound)
        if isinstance(value, bool) or not isinstance(value, number):
            what = "an int" if kind == "int" else "a number"
            raise PetsegError(f"{where}: {key} needs '{bound}', {what}, not {value!r}")
    if not spec["low"] < spec["high"]:
        raise PetsegError(f"{where}: {key}: low {spec['low']} must be below high {spec['high']}")
    log = spec.setdefault("log", False)
    if not isinstance(log, bool):
        raise PetsegError(f"{where}: {key}: log must be true or false, not {log!r}")
    if log and spec["low"] <= 0:
        raise PetsegError(f"{where}: {key}: a log range needs low > 0, not {spec['low']}")
    step = spec.get("step")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, number) or step <= 0:
            raise PetsegError(f"{where}: {key}: step must be a positive number, not {step!r}")
        if log:
            raise PetsegError(f"{where}: {key}: a range cannot have both log: true and a step")
    if kind == "int":
        spec.setdefault("step", 1)
    return spec


def grid_of(space: Mapping[str, Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Every value of every key, for ``--sampler grid`` (floats need a step)."""
    grid: dict[str, list[Any]] = {}
    for key, spec in space.items():
        if spec["type"] == "categorical":
            grid[key] = list(spec["choices"])
        elif spec["type"] == "int" and not spec["log"]:
            grid[key] = list(range(spec["low"], spec["high"] + 1, spec["step"]))
        elif spec["type"] == "float" and spec.get("step"):
            n = math.floor((spec["high"] - spec["low"]) / spec["step"] + 1e-9)
            grid[key] = [round(spec["low"] + i * spec["step"], 12) for i in range(n + 1)]
        else:
            raise PetsegError(
                f"--sampler grid needs a finite set of values: give {key} a step (and no "
                "log: true), or make it categorical"
            )
    return grid


def _corners(space: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A few assignments that together take every choice and both ends of every range."""
    n = max([2] + [len(s["choices"]) for s in space.values() if s["type"] == "categorical"])
    corners = []
    for i in range(n):
        values = {}
        for key, spec in space.items():
            if spec["type"] == "categorical":
                values[key] = spec["choices"][i % len(spec["choices"])]
            else:
                values[key] = spec["low"] if i % 2 == 0 else spec["high"]
        corners.append(values)
    return corners


def option_args(params: Mapping[str, Any]) -> list[str]:
    """``--key=value`` arguments (values as YAML scalars, as ``petseg.training.as_arguments``)."""
    from petseg.training import as_arguments

    return as_arguments(dict(params))


def check_options(train_args: Sequence[str], space: Mapping[str, Mapping[str, Any]]) -> None:
    """Fail in one line, before anything trains, on an option that petseg-train would refuse:
    the base options (with their checks of folders and data), and every choice and both ends of
    every range of the space."""
    from jsonargparse import ArgumentError

    from petseg.training import check_args

    for arg in train_args:
        name = arg.split("=", 1)[0].lstrip("-")
        if arg.startswith("--") and name in _OWN_OPTIONS:
            raise PetsegError(f"--{name} cannot be given to a sweep: {_OWN_OPTIONS[name]}")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", _ARGS_WARNING)
            check_args(train_args)
    except ArgumentError as err:
        raise PetsegError(f"petseg-train refuses the sweep's options: {_flat(err)}") from None
    for values in _corners(space):
        extra = option_args(values)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", _ARGS_WARNING)
                check_args([*train_args, *extra])
        except (ArgumentError, PetsegError) as err:
            raise PetsegError(
                f"petseg-train refuses a value of the space ({' '.join(extra)}): {_flat(err)}"
            ) from None
    with warnings.catch_warnings():  # last: it makes the output folders
        warnings.filterwarnings("ignore", _ARGS_WARNING)
        check_args(train_args, checks=True)  # the output folders, the data


def _flat(err: BaseException) -> str:
    return " ".join(str(err).split())


# --- the study ---------------------------------------------------------------------------------


def study_dir(sweep_dir: str | Path, study: str) -> Path:
    if not _STUDY_NAME.match(study):
        raise PetsegError(
            f"--study {study!r}: use letters, digits, '.', '_' and '-' (it names a folder)"
        )
    return Path(sweep_dir) / study


def default_storage(sweep_dir: str | Path, study: str) -> str:
    """SQLite in the sweep's folder: ``<sweep_dir>/<study>/study.db``."""
    return f"sqlite:///{(study_dir(sweep_dir, study) / 'study.db').resolve()}"


SCHEMA_ATTEMPTS = 3  # opening a new database that other workers are creating at the same time


def open_storage(url: str, heartbeat: int | None = HEARTBEAT):
    """Optuna's relational storage at ``url`` (heartbeats on when ``heartbeat`` is given)."""
    import optuna

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}  # several local workers
    if heartbeat is not None:
        kwargs |= {"heartbeat_interval": heartbeat, "grace_period": 3 * heartbeat}
    from sqlalchemy.exc import IntegrityError

    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, **kwargs)
        except Exception as err:  # SQLAlchemy's errors: bad URL, server down, missing driver
            # workers started together on a new database race to create Optuna's tables: the
            # loser's CREATE fails on a name the winner just took, and then the tables exist
            if isinstance(err, IntegrityError) and attempt + 1 < SCHEMA_ATTEMPTS:
                time.sleep(1 + attempt)
                continue
            message = f"--storage {_safe_url(url)}: cannot open it ({first_line(err)})"
            raise PetsegError(message) from None
    raise AssertionError("unreachable")


def _safe_url(url: str) -> str:
    """The URL without its password."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def load_study(name: str, storage_url: str):
    """An existing study, or a one-line error listing the studies that the storage holds."""
    import optuna

    storage = open_storage(storage_url, heartbeat=None)
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    names = [s.study_name for s in summaries]
    if name not in names:
        held = ", ".join(sorted(names)) or "none"
        raise PetsegError(
            f"--study {name}: no such study in {_safe_url(storage_url)} (it holds: {held})"
        )
    return optuna.load_study(study_name=name, storage=storage)


def _sampler(name: str, space: Mapping[str, Mapping[str, Any]]):
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler()
    if name == "random":
        return optuna.samplers.RandomSampler()
    return RetryingGridSampler(grid_of(space), seed=0)  # the same order in every worker


def _pruner(name: str):
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def _grid_sampler_class():
    import optuna
    from optuna.trial import TrialState

    class _RetryingGridSampler(optuna.samplers.GridSampler):
        """Optuna's grid sampler, except that a failed trial's point is tried again (a killed
        worker's trial, a crash): only complete and pruned trials visit a point."""

        def _get_unvisited_grid_ids(self, study) -> list[int]:
            visited, running = set(), set()
            for t in study._storage.get_all_trials(study._study_id, deepcopy=False):
                if "grid_id" not in t.system_attrs:
                    continue
                if not self._same_search_space(t.system_attrs["search_space"]):
                    continue
                if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
                    visited.add(t.system_attrs["grid_id"])
                elif t.state == TrialState.RUNNING:
                    running.add(t.system_attrs["grid_id"])
            unvisited = set(range(self._n_min_trials)) - visited
            return list(unvisited - running or unvisited)

    return _RetryingGridSampler


def RetryingGridSampler(*args, **kwargs):  # a class made on first use
    return _grid_sampler_class()(*args, **kwargs)


# --- one trial ---------------------------------------------------------------------------------


def _reporter_class():
    from lightning.pytorch.callbacks import Callback

    class TrialReporter(Callback):
        """Reports validation Dice to an Optuna trial every epoch (``report``: the first seed's
        run) and prunes it when the study's pruner says so; writes ``sweep.json`` (study, trial,
        seed, values) into the run's folder, and notices Ctrl-C (which Lightning turns into
        ``SystemExit``)."""

        def __init__(self, trial, report: bool, info: Mapping[str, Any]) -> None:
            self.trial, self.report, self.info = trial, report, dict(info)
            self.run_dir: Path | None = None
            self.interrupted = False
            self.pruned_epoch: int | None = None
            self.values: list[float] = []

        def on_train_start(self, trainer, pl_module) -> None:
            callback = trainer.checkpoint_callback
            if callback is not None and callback.dirpath:
                self.run_dir = Path(callback.dirpath)
                (self.run_dir / "sweep.json").write_text(json.dumps(self.info, indent=2) + "\n")

        def on_validation_end(self, trainer, pl_module) -> None:
            if trainer.sanity_checking or "val/dice" not in trainer.callback_metrics:
                return
            value = float(trainer.callback_metrics["val/dice"])
            self.values.append(value)
            if not self.report:
                return
            epoch = trainer.current_epoch
            self.trial.report(value, epoch)
            if self.trial.should_prune():
                import optuna

                self.pruned_epoch = epoch
                raise optuna.TrialPruned(f"pruned at epoch {epoch} (val/dice {value:.4f})")

        def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
            if isinstance(exception, KeyboardInterrupt):
                self.interrupted = True

    return TrialReporter


SURPLUS = "not trained: earlier trials of other workers already make the study's total"


class _Surplus(Exception):
    """A trial created after the study's total was taken (two workers counted at once)."""


def _is_surplus(trial, total: int) -> bool:
    """Whether the trials numbered before ``trial`` (Optuna numbers them in the order they
    were created, across workers) already make ``total`` without a failure among them.

    Workers count the study before they create a trial; two that count at the same moment
    would both create one. The later one, seeing the earlier, steps aside.
    """
    from optuna.trial import TrialState

    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    earlier = trial.study.get_trials(deepcopy=False, states=counted)
    return sum(t.number < trial.number for t in earlier) >= total


class _Objective:
    """Trains one trial's configuration over the seeds; returns the mean best val Dice."""

    def __init__(
        self, cfg: SweepConfig, train_args: list[str], storage_url: str, total: int
    ) -> None:
        self.cfg, self.train_args, self.storage_url = cfg, train_args, storage_url
        self.total = total
        self.exit_code = 130  # as Ctrl-C; 128 + the signal's number when training caught one
        self.reporter_class = _reporter_class()
        self.number: int | None = None  # the trial being trained, once it has started

    def __call__(self, trial) -> float:
        import optuna

        from petseg.console import user_message
        from petseg.interrupts import TrainingInterrupted
        from petseg.training import train

        self.number = trial.number
        if _is_surplus(trial, self.total):
            trial.set_user_attr("fail_reason", SURPLUS)
            print(f"trial {trial.number} {SURPLUS}")
            raise _Surplus(SURPLUS)
        params = {key: _suggest(trial, key, spec) for key, spec in self.cfg.space.items()}
        extra = option_args(params)
        seeds = [self.cfg.seed + i for i in range(self.cfg.seeds)]
        trial.set_user_attr("options", " ".join(extra))
        trial.set_user_attr("seeds", seeds)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        print(f"trial {trial.number}: {' '.join(extra) or '(no options)'}, seeds {seeds}")
        runs: list[str] = []
        best: list[float] = []
        tests: list[float] = []
        for index, seed in enumerate(seeds):
            info = {
                "study": self.cfg.study,
                "storage": _safe_url(self.storage_url),
                "trial": trial.number,
                "seed": seed,
                "params": params,
            }
            reporter = self.reporter_class(trial, report=index == 0, info=info)
            argv = [*self.train_args, *extra, f"--seed_everything={seed}"]
            hparams = {"sweep.study": self.cfg.study, "sweep.trial": trial.number}
            try:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", _ARGS_WARNING)
                    result = train(argv, callbacks=[reporter], test=self.cfg.test, hparams=hparams)
            except optuna.TrialPruned:
                runs.append(str(reporter.run_dir))
                trial.set_user_attr("runs", runs)
                trial.set_user_attr("pruned_epoch", reporter.pruned_epoch)
                print(
                    f"trial {trial.number} pruned at epoch {reporter.pruned_epoch} (val/dice "
                    f"{reporter.values[-1]:.4f}, below the other trials); run {reporter.run_dir}"
                )
                raise
            except SystemExit as err:  # Lightning's answer to Ctrl-C
                signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignored it
                if reporter.run_dir is not None:
                    trial.set_user_attr("runs", [*runs, str(reporter.run_dir)])
                if reporter.interrupted:
                    trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
                    raise KeyboardInterrupt from err
                trial.set_user_attr("fail_reason", f"exited with code {err.code}")
                raise RuntimeError(f"training exited with code {err.code}") from err
            except TrainingInterrupted as err:  # SIGINT or SIGTERM, caught by petseg.train
                if reporter.run_dir is not None:
                    trial.set_user_attr("runs", [*runs, str(reporter.run_dir)])
                name = "Ctrl-C" if err.signum == signal.SIGINT else signal.Signals(err.signum).name
                trial.set_user_attr("fail_reason", f"interrupted ({name})")
                self.exit_code = err.exit_code
                raise KeyboardInterrupt from err
            except KeyboardInterrupt:
                trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
                raise
            except Exception as err:
                reason = user_message(err) or f"{type(err).__name__}: {first_line(err)}"
                if reporter.run_dir is not None:
                    trial.set_user_attr("runs", [*runs, str(reporter.run_dir)])
                trial.set_user_attr("fail_reason", reason)
                print(f"trial {trial.number} failed (seed {seed}): {reason}", file=sys.stderr)
                raise
            runs.append(str(result.run.ckpt_dir))
            trial.set_user_attr("runs", runs)
            if result.best_val_dice is None or not math.isfinite(result.best_val_dice):
                reason = (
                    "no validation Dice (did validation run? see --trainer.limit_val_batches)"
                    if result.best_val_dice is None
                    else f"validation Dice is {result.best_val_dice}"
                )
                trial.set_user_attr("fail_reason", reason)
                print(f"trial {trial.number} failed (seed {seed}): {reason}", file=sys.stderr)
                raise PetsegError(reason)
            best.append(result.best_val_dice)
            trial.set_user_attr("val_dice_seeds", best)
            if "dice" in result.test:
                tests.append(result.test["dice"])
                trial.set_user_attr("test_dice_seeds", tests)
        mean, std = _mean_std(best)
        trial.set_user_attr("val_dice_mean", mean)
        trial.set_user_attr("val_dice_std", std)
        if tests:
            trial.set_user_attr("test_dice_mean", _mean_std(tests)[0])
            trial.set_user_attr("test_dice_std", _mean_std(tests)[1])
        print(f"trial {trial.number} complete: val/dice {_pm(mean, std)} over {len(best)} seed(s)")
        return mean


def _suggest(trial, key: str, spec: Mapping[str, Any]) -> Any:
    if spec["type"] == "categorical":
        return trial.suggest_categorical(key, spec["choices"])
    if spec["type"] == "int":
        low, high = spec["low"], spec["high"]
        return trial.suggest_int(key, low, high, step=spec["step"], log=spec["log"])
    return trial.suggest_float(
        key, spec["low"], spec["high"], step=spec.get("step"), log=spec["log"]
    )


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else None


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return ""
    return f"{mean:.4f}" if std is None else f"{mean:.4f} +- {std:.4f}"


# --- the worker --------------------------------------------------------------------------------


def run_sweep(cfg: SweepConfig) -> int:
    """Run trials until the study holds ``cfg.trials`` complete or pruned trials; 0 when it
    does, 130 on Ctrl-C, 1 after ``max_failures`` failed trials in a row."""
    import optuna

    folder = study_dir(cfg.sweep_dir, cfg.study)
    storage_url = cfg.storage or default_storage(cfg.sweep_dir, cfg.study)
    total = cfg.trials
    if cfg.sampler == "grid":
        size = math.prod(len(v) for v in grid_of(cfg.space).values())
        if total is None or total > size:
            total = size
    if total is None:
        raise PetsegError("--trials N is needed (the study's total) unless --sampler grid")
    defaults = [f"--save_dir={folder / 'saved_models'}", f"--log_dir={folder / 'logs'}"]
    train_args = [*defaults, *cfg.train_args]  # the user's own --save_dir or config wins
    check_options(train_args, cfg.space)  # before a study or a run is made
    if cfg.storage is None:
        folder.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # petseg prints each trial's outcome
    storage = open_storage(storage_url, cfg.heartbeat)
    try:
        study = optuna.create_study(
            study_name=cfg.study,
            storage=storage,
            direction="maximize",
            sampler=_sampler(cfg.sampler, cfg.space),
            pruner=_pruner(cfg.pruner),
            load_if_exists=True,
        )
    except Exception as err:
        raise PetsegError(f"--study {cfg.study}: {first_line(err)}") from None
    _claim_space(study, cfg)
    print(
        f"sweep {cfg.study}: {total} trials of {cfg.seeds} seed(s), {cfg.sampler} sampler, "
        f"{cfg.pruner} pruner, storage {_safe_url(storage_url)}"
    )
    objective = _Objective(cfg, train_args, storage_url, total)
    try:
        done = _work(study, objective, cfg, total)
    except KeyboardInterrupt:
        running = "the running trial is marked failed; " if objective.number is not None else ""
        print(
            f"stopped by Ctrl-C: {running}rerun the same command to continue the study",
            file=sys.stderr,
        )
        return objective.exit_code
    if not done:
        return 1
    _print_best(study, total)
    return 0


def _work(study, objective: _Objective, cfg: SweepConfig, total: int) -> bool:
    """Trials until the study holds ``total`` finished ones (True), or ``max_failures`` failed
    in a row (False)."""
    import optuna
    from optuna.trial import TrialState

    failures = 0
    waiting = False
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # trials of killed workers
        trials = study.get_trials(deepcopy=False)
        done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        if done >= total:
            break
        if done + running >= total:  # the rest are running elsewhere: wait for their outcome
            if not waiting:
                print(f"waiting for {running} trial(s) running in other workers")
                waiting = True
            time.sleep(cfg.heartbeat)
            continue
        waiting = False
        if failures >= cfg.max_failures:
            print(
                f"petseg-sweep: error: {failures} trials failed in a row; stopping (see their "
                f"reasons with petseg-sweep --summary --study {cfg.study})",
                file=sys.stderr,
            )
            return False
        objective.number = None
        study.optimize(objective, n_trials=1, catch=(Exception,))
        mine = objective.number  # this worker's trial (others may have started later ones)
        trial = study.get_trials(deepcopy=False)[mine] if mine is not None else None
        # a trial that stepped aside for another worker's is no failure of this worker's
        stepped_aside = trial is not None and trial.user_attrs.get("fail_reason") == SURPLUS
        if not stepped_aside:
            failures = failures + 1 if trial is None or trial.state == TrialState.FAIL else 0
    return True


def _claim_space(study, cfg: SweepConfig) -> None:
    """Record the space in a new study; refuse to continue a study with another space."""
    saved = study.user_attrs.get("space")
    if saved is None:
        study.set_user_attr("space", cfg.space)
        study.set_user_attr("sampler", cfg.sampler)
        study.set_user_attr("seeds", cfg.seeds)
    elif json.loads(json.dumps(saved)) != json.loads(json.dumps(cfg.space)):
        raise PetsegError(
            f"--study {cfg.study} already exists with another space ({json.dumps(saved)}); "
            "pass the same space to continue it, or another --study name"
        )


def _print_best(study, total: int) -> None:
    try:
        best = study.best_trial
    except ValueError:
        print(f"sweep {study.study_name}: {total} trials done, none complete")
        return
    attrs = best.user_attrs
    print(
        f"sweep {study.study_name}: {total} trials done; best trial {best.number}: val/dice "
        f"{_pm(attrs.get('val_dice_mean'), attrs.get('val_dice_std'))} with "
        f"{attrs.get('options') or '(no options)'}"
    )


# --- the summary -------------------------------------------------------------------------------

_STATE_ORDER = {"COMPLETE": 0, "PRUNED": 1, "RUNNING": 2, "WAITING": 3, "FAIL": 4}


@dataclass
class Row:
    """One trial in the leaderboard."""

    number: int
    state: str
    params: dict[str, Any]
    val_mean: float | None
    val_std: float | None
    test_mean: float | None
    test_std: float | None
    seeds: int
    runs: list[str]
    note: str


def leaderboard(study) -> list[Row]:
    """The study's trials, complete ones best first, then pruned, running and failed."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        note = a.get("fail_reason", "")
        if t.state.name == "FAIL" and not note:
            note = "its worker stopped (no heartbeat)"
        if t.state.name == "PRUNED":
            note = f"pruned at epoch {a.get('pruned_epoch')}"
        rows.append(
            Row(
                number=t.number,
                state=t.state.name,
                params=dict(t.params),
                val_mean=a.get("val_dice_mean", t.value if t.state.name == "COMPLETE" else None),
                val_std=a.get("val_dice_std"),
                test_mean=a.get("test_dice_mean"),
                test_std=a.get("test_dice_std"),
                seeds=len(a.get("val_dice_seeds", [])),
                runs=list(a.get("runs", [])),
                note=note,
            )
        )
    rows.sort(key=lambda r: (_STATE_ORDER.get(r.state, 5), -(r.val_mean or 0.0), r.number))
    return rows


def nested(params: Mapping[str, Any]) -> dict[str, Any]:
    """``{"model.lr": 0.01}`` as ``{"model": {"lr": 0.01}}`` (a petseg-train config)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def summarize(study, output: str | Path) -> dict[str, Path]:
    """Write the leaderboard (``leaderboard.md``, ``.csv``), ``best.yaml`` and plots into
    ``output``; return what was written. Files of an earlier summary there are replaced."""
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise PetsegError(f"--output {output} is a file, not a folder; pass a folder")
    output.mkdir(parents=True, exist_ok=True)
    rows = leaderboard(study)
    if not rows:
        raise PetsegError(f"--study {study.study_name} holds no trials yet; nothing to summarize")
    keys = sorted({k for r in rows for k in r.params} | set(study.user_attrs.get("space", {})))
    written = {"csv": output / "leaderboard.csv", "md": output / "leaderboard.md"}
    with written["csv"].open("w", newline="") as f:
        writer = csv.writer(f)
        head = ["trial", *keys, "val_dice_mean", "val_dice_std", "test_dice_mean"]
        writer.writerow([*head, "test_dice_std", "seeds", "state", "runs", "note"])
        for r in rows:
            writer.writerow(
                [
                    r.number,
                    *(r.params.get(k, "") for k in keys),
                    *map(_num, (r.val_mean, r.val_std, r.test_mean, r.test_std)),
                    *(r.seeds, r.state, " ".join(r.runs), r.note),
                ]
            )
    lines = [
        f"# Sweep {study.study_name}",
        "",
        f"{len(rows)} trials; objective: best validation Dice, mean over seeds (+- sample "
        "standard deviation).",
        "",
        "| rank | trial | " + " | ".join(keys) + " | val Dice | test Dice | seeds | state | run |",
        "| ---: | ---: | " + "".join("--- | " for _ in keys) + "---: | ---: | ---: | --- | --- |",
    ]
    for rank, r in enumerate(rows, 1):
        state = r.state.lower() + (f" ({r.note})" if r.note else "")
        lines.append(
            f"| {rank} | {r.number} | "
            + " | ".join(_cell(r.params.get(k, "")) for k in keys)
            + f" | {_pm(r.val_mean, r.val_std)} | {_pm(r.test_mean, r.test_std)} | {r.seeds} "
            f"| {_cell(state)} | {'<br>'.join(r.runs)} |"
        )
    written["md"].write_text("\n".join(lines) + "\n")
    complete = [r for r in rows if r.state == "COMPLETE"]
    if complete:
        best = complete[0]
        header = (
            f"# best trial {best.number} of sweep {study.study_name}: val/dice "
            f"{_pm(best.val_mean, best.val_std)} over {best.seeds} seed(s)\n"
            "# the searched options only; add the sweep's own options, e.g.\n"
            "# petseg-train --config BASE.yaml --config best.yaml [the sweep's other options]\n"
        )
        written["best"] = output / "best.yaml"
        written["best"].write_text(header + yaml.safe_dump(nested(best.params), sort_keys=True))
    written |= _plots(study, rows, keys, output)
    return written


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|")


def _plots(study, rows: list[Row], keys: list[str], output: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ov

    written: dict[str, Path] = {}
    complete = [r for r in rows if r.state == "COMPLETE"]
    if not complete:
        return written
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", "Target and region quantiles")  # alike trials
        ax = ov.plot_optimization_history(study, target_name="val Dice (mean over seeds)")
        written["history"] = output / "history.png"
        ax.figure.savefig(written["history"], dpi=100, bbox_inches="tight")
        plt.close(ax.figure)
        if len(complete) >= 2 and keys:
            try:
                ax = ov.plot_param_importances(study)
            except (RuntimeError, ValueError):  # every trial alike: nothing to attribute
                ax = None
            if ax is not None:
                written["importances"] = output / "importances.png"
                ax.figure.savefig(written["importances"], dpi=100, bbox_inches="tight")
                plt.close(ax.figure)
    if len(keys) == 1:
        written["curve"] = _curve(study.study_name, keys[0], complete, output / "curve.png")
    return written


def _curve(name: str, key: str, rows: list[Row], path: Path) -> Path:
    """The objective (mean +- std over seeds) against the one searched option."""
    import matplotlib.pyplot as plt

    points = sorted(((r.params[key], r.val_mean, r.val_std or 0.0, r) for r in rows), key=_order)
    xs = [p[0] for p in points]
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
    fig, ax = plt.subplots(figsize=(6, 4))
    positions = xs if numeric else list(range(len(xs)))
    val = [p[1] for p in points], [p[2] for p in points]
    ax.errorbar(positions, val[0], yerr=val[1], marker="o", capsize=4, label="val Dice")
    tests = [
        (pos, p[3].test_mean, p[3].test_std or 0.0)
        for pos, p in zip(positions, points, strict=True)
        if p[3].test_mean is not None
    ]
    if tests:
        xt, yt, et = zip(*tests, strict=True)
        ax.errorbar(xt, yt, yerr=et, marker="s", capsize=4, label="test Dice")
    if not numeric:
        ax.set_xticks(positions, [str(x) for x in xs])
    ax.set_xlabel(key)
    ax.set_ylabel("Dice (mean +- std over seeds)")
    ax.set_title(f"sweep {name}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _order(point: tuple) -> tuple:
    x = point[0]
    return (0, x, "") if isinstance(x, (int, float)) and not isinstance(x, bool) else (1, 0, str(x))
