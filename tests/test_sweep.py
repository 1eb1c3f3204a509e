"""petseg-sweep: Optuna studies of petseg-train runs, their summary, and their storages.

Tiny trials (UNet 8 channels wide, 64 px, 1-3 epochs) on the synthetic data. The tests of a
killed worker, of Ctrl-C and of two workers sharing a PostgreSQL study run real worker processes.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from conftest import small_run_args
from petseg.cli import sweep_main
from petseg.cli.sweep import split_argv
from petseg.sweep import SURPLUS
from petseg.training import check_args

SRC = Path(__file__).resolve().parents[1] / "src"


def base_args(root: Path, *extra: str) -> list[str]:
    """petseg-train options of a tiny, fast CPU run (its folders come from the sweep)."""
    return small_run_args(root, "--arch", "unet", "--trainer.max_epochs", "1", *extra)


def write_space(folder: Path, space: dict) -> Path:
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def study_of(folder: Path, name: str, storage: str | None = None) -> optuna.Study:
    url = storage or f"sqlite:///{folder / 'sweeps' / name / 'study.db'}"
    return optuna.load_study(study_name=name, storage=url)


def worker_command(args: list[str]) -> list[str]:
    """A worker in its own process, as ``petseg-sweep ARGS`` (this checkout's code)."""
    return [
        sys.executable,
        "-c",
        "import sys; from petseg.cli import sweep_main; sys.exit(sweep_main(sys.argv[1:]))",
        *args,
    ]


def worker_env() -> dict[str, str]:
    path = os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "PYTHONPATH": path}


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen | None = None):
    """Poll ``condition()`` until it returns something truthy."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            said = proc.stderr.read()[-2000:] if proc.stderr else ""
            raise AssertionError(f"the worker ended ({proc.returncode}) before {what}: {said}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def reported_trial(folder: Path, name: str):
    """A RUNNING trial that reported a validation Dice, once there is one."""
    if not (folder / "sweeps" / name / "study.db").is_file():
        return None
    try:
        trials = study_of(folder, name).get_trials(deepcopy=False)
    except (KeyError, Exception):  # the study is being created
        return None
    return next(
        (t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values), None
    )


def hparams_of(log_dir: Path) -> str:
    """The TensorBoard HParams summaries of a run, as text."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from petseg.tensorboard import event_files

    text = ""
    for events in event_files(log_dir):
        acc = EventAccumulator(str(events))
        acc.Reload()
        with contextlib.suppress(KeyError):  # files without an HParams summary
            text += str(acc.PluginTagToContent("hparams"))
    return text


# --- options and space: one line, before anything trains --------------------------------------


def test_split_argv_keeps_the_sweeps_options_and_passes_the_rest_to_petseg_train():
    own, train = split_argv(
        ["--space", "s.yaml", "--study=x", "--config", "c.yaml", "--model.lr", "0.1", "--verbose"]
    )
    assert own == ["--space", "s.yaml", "--study=x", "--verbose"]
    assert train == ["--config", "c.yaml", "--model.lr", "0.1", "--verbose"]


BAD_SPACES = [
    ("[1, 2]", "expected a mapping of petseg-train options"),
    ("model.lr: {type: float, low: 0.1}", "model.lr needs 'high'"),
    ("model.lr: {type: float, low: 0.1, high: 0.01}", "low 0.1 must be below high 0.01"),
    ("model.lr: {type: float, low: 0, high: 0.1, log: true}", "a log range needs low > 0"),
    ("model.lr: {type: float, low: 0.01, high: 0.1, lg: true}", "unknown field(s) lg"),
    ("model.lr: {type: real, low: 0.01, high: 0.1}", "'type: float', 'type: int'"),
    ("data.augment: {type: categorical, choices: []}", "needs 'choices', a non-empty list"),
    ("model.base_channels: {type: int, low: 4, high: 8.5}", "needs 'high', an int"),
    ("seed_everything: {type: int, low: 1, high: 3}", "use --seeds K"),
    ("model.lr: !!python/object/apply:os.system [echo unsafe]", "not valid YAML"),
    ("model.lrr: {type: float, low: 0.01, high: 0.1}", "unrecognized arguments: --model.lrr"),
    ("data.augment: {type: categorical, choices: [basic, wild]}", "--data.augment=wild"),
    ("data.image_size: {type: int, low: 16, high: 64}", "16 does not conform to restriction v>=32"),
]


@pytest.mark.parametrize(("space", "message"), BAD_SPACES)
def test_a_bad_space_is_one_line_before_anything_trains(
    space, message, synthetic_root, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(space)
    argv = ["--space", "space.yaml", "--study", "bad", "--trials", "2"]
    assert sweep_main([*argv, *base_args(synthetic_root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("petseg-sweep: error: ") and "\n" not in err
    assert message in err
    assert not list(tmp_path.rglob("study.db")) and not list(tmp_path.rglob("version_*"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--trials", "2", "--model.lrr", "1"], "unrecognized arguments: --model.lrr"),
        (["--trials", "2", "--ckpt_path", "last"], "cannot resume a checkpoint"),
        (["--trials", "2", "--seed_everything", "3"], "use --seeds K"),
        (["--trials", "2", "--sampler", "grid2"], "--sampler"),
        (["--trials", "0"], "--trials 0 is out of range"),
        (["--trials", "2", "--seeds", "0"], "seeds"),
        (["--trials", "2", "--heartbeat", "0"], "heartbeat"),
        (["--sampler", "tpe"], "--trials N is needed"),
        (["--trials", "2", "--sampler", "grid", "--space", "float.yaml"], "give model.lr a step"),
        (["--trials", "2", "--data.root", "nowhere", "--data.download", "false"], "nowhere"),
    ],
)
def test_bad_sweep_options_are_one_line(
    argv, message, synthetic_root, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    write_space(tmp_path, {"data.augment": {"type": "categorical", "choices": ["basic", "none"]}})
    (tmp_path / "float.yaml").write_text("model.lr: {type: float, low: 0.001, high: 0.01}")
    base = base_args(synthetic_root)
    assert sweep_main(["--space", "space.yaml", "--study", "bad", *base, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("petseg-sweep: error: ") and "\n" not in err and message in err
    assert not list(tmp_path.rglob("study.db")) and not list(tmp_path.rglob("version_*"))


def test_a_summary_of_a_missing_study_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sweep_main(["--summary", "--study", "none"]) == 2
    assert "no study at sweeps/none/study.db" in capsys.readouterr().err
    url = f"sqlite:///{tmp_path / 'other.db'}"
    optuna.create_study(study_name="other", storage=url)
    assert sweep_main(["--summary", "--study", "none", "--storage", url]) == 2
    assert "no such study in" in capsys.readouterr().err and "(it holds: other)"


# --- a grid sweep over seeds, rerun, summarized ------------------------------------------------


@pytest.fixture(scope="module")
def grid_sweep(synthetic_root, tmp_path_factory):
    """A learning curve: a grid over data.train_limit (18, 36 of the 36 training images), two
    seeds each: (folder, argv, stdout)."""
    folder = tmp_path_factory.mktemp("grid")
    space = {"data.train_limit": {"type": "int", "low": 18, "high": 36, "step": 18}}
    argv = [
        "--space", str(write_space(folder, space)),
        "--study", "curve",
        "--sampler", "grid",
        "--pruner", "none",
        "--seeds", "2",
        "--sweep_dir", str(folder / "sweeps"),
        *base_args(synthetic_root),
    ]  # fmt: skip
    proc = subprocess.run(
        worker_command(argv), capture_output=True, text=True, env=worker_env(), timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder, argv, proc.stdout


def test_a_grid_sweep_trains_every_point_over_the_seeds(grid_sweep):
    folder, _, stdout = grid_sweep
    trials = study_of(folder, "curve").get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2  # the grid's two points
    assert sorted(t.params["data.train_limit"] for t in trials) == [18, 36]
    for t in trials:
        a = t.user_attrs
        assert a["seeds"] == [42, 43] and len(a["runs"]) == 2 and len(a["val_dice_seeds"]) == 2
        assert t.value == pytest.approx(sum(a["val_dice_seeds"]) / 2)
        assert a["val_dice_mean"] == pytest.approx(t.value)
        spread = abs(a["val_dice_seeds"][0] - a["val_dice_seeds"][1]) / 2**0.5  # stdev of two
        assert a["val_dice_std"] == pytest.approx(spread)
        assert len(t.intermediate_values) == 1  # the first seed's epoch
        for seed, run in zip(a["seeds"], a["runs"], strict=True):
            run = Path(run)
            assert (run / "unet.pth").is_file() and (run / "test" / "metrics.json").is_file()
            info = json.loads((run / "sweep.json").read_text())
            assert (info["study"], info["trial"], info["seed"]) == ("curve", t.number, seed)
            hparams = hparams_of(folder / "sweeps" / "curve" / "logs" / "unet" / run.name)
            assert "sweep.study" in hparams and "sweep.trial" in hparams and "curve" in hparams
        assert f"train {t.params['data.train_limit']} / valid 4" in stdout
    assert "trial 1 complete: val/dice" in stdout


def test_rerunning_a_finished_sweep_trains_nothing_more(grid_sweep, capsys):
    folder, argv, _ = grid_sweep
    assert sweep_main(argv) == 0
    assert "2 trials done; best trial" in capsys.readouterr().out
    assert len(study_of(folder, "curve").get_trials()) == 2
    runs = list((folder / "sweeps" / "curve" / "saved_models" / "unet").iterdir())
    assert len(runs) == 4


def test_a_study_cannot_be_continued_with_another_space(grid_sweep, capsys):
    folder, argv, _ = grid_sweep
    other = folder / "other.yaml"
    other.write_text("data.train_limit: {type: int, low: 12, high: 36, step: 12}")
    argv = [other.as_posix() if a.endswith("space.yaml") else a for a in argv]
    assert sweep_main(argv) == 2
    assert "already exists with another space" in capsys.readouterr().err


def test_the_summary_ranks_trials_writes_best_yaml_and_plots(grid_sweep, capsys):
    folder, _, _ = grid_sweep
    out = folder / "summary"
    argv = ["--summary", "--study", "curve", "--sweep_dir", str(folder / "sweeps")]
    assert sweep_main([*argv, "--output", str(out)]) == 0
    trials = sorted(study_of(folder, "curve").get_trials(), key=lambda t: -t.value)
    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert [int(r["trial"]) for r in rows] == [t.number for t in trials]
    assert float(rows[0]["val_dice_mean"]) == pytest.approx(trials[0].value, abs=1e-6)
    assert rows[0]["runs"].split() == trials[0].user_attrs["runs"]
    assert rows[0]["state"] == "COMPLETE" and rows[0]["seeds"] == "2"
    markdown = (out / "leaderboard.md").read_text()
    assert f"| 1 | {trials[0].number} | {trials[0].params['data.train_limit']} |" in markdown
    assert "+-" in markdown
    best = out / "best.yaml"
    config = check_args(["--config", str(best), "--data.root", "x"])
    assert config.data.train_limit == trials[0].params["data.train_limit"]
    for name in ("history.png", "curve.png", "importances.png"):
        assert (out / name).stat().st_size > 1000, name
    assert f"wrote {out / 'curve.png'}" in capsys.readouterr().out


# --- pruning and failures ----------------------------------------------------------------------


def test_a_trial_below_the_median_is_pruned_and_says_so(synthetic_root, tmp_path, capsys):
    space = {"model.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="prune", storage=url, direction="maximize")
    for i in range(5):  # the median pruner's startup trials, all far better than a tiny run
        study.add_trial(
            optuna.trial.create_trial(
                params={"model.lr": 0.001 + i * 1e-4},
                distributions={
                    "model.lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)
                },
                value=0.99,
                intermediate_values={0: 0.99, 1: 0.99, 2: 0.99},
            )
        )
    argv = ["--space", str(write_space(tmp_path, space)), "--study", "prune", "--trials", "6"]
    argv += ["--storage", url, "--sweep_dir", str(tmp_path / "sweeps")]
    assert sweep_main([*argv, *base_args(synthetic_root, "--trainer.max_epochs", "3")]) == 0
    trial = study_of(tmp_path, "prune", url).get_trials()[-1]
    assert trial.state == TrialState.PRUNED and trial.user_attrs["pruned_epoch"] == 0
    assert list(trial.intermediate_values) == [0]
    run = Path(trial.user_attrs["runs"][0])
    assert run.is_dir() and not (run / "unet.pth").exists()  # stopped at its first epoch
    assert "trial 5 pruned at epoch 0 (val/dice" in capsys.readouterr().out


def test_a_failed_trial_records_its_reason_and_the_sweep_goes_on(synthetic_root, tmp_path, capsys):
    space = {"model.lr": {"type": "categorical", "choices": [1.0e12, 1.0e-3]}}
    argv = ["--space", str(write_space(tmp_path, space)), "--study", "fail", "--trials", "2"]
    argv += ["--sampler", "grid", "--max_failures", "2", "--sweep_dir", str(tmp_path / "sweeps")]
    assert sweep_main([*argv, *base_args(synthetic_root)]) == 1  # gave up on 1e12 after 2 tries
    captured = capsys.readouterr()
    trials = study_of(tmp_path, "fail").get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 1 and complete[0].params["model.lr"] == 1.0e-3  # the sweep went on
    assert len(failed) >= 2 and all(t.params["model.lr"] == 1.0e12 for t in failed)
    for t in failed:
        assert "loss became NaN or infinite" in t.user_attrs["fail_reason"]
        assert "\n" not in t.user_attrs["fail_reason"]
    assert "failed (seed 42): the training loss became NaN" in captured.err
    assert "2 trials failed in a row; stopping" in captured.err
    assert (
        sweep_main(["--summary", "--study", "fail", "--sweep_dir", str(tmp_path / "sweeps")]) == 0
    )
    rows = list(
        csv.DictReader((tmp_path / "sweeps" / "fail" / "summary" / "leaderboard.csv").open())
    )
    assert rows[0]["state"] == "COMPLETE" and "NaN" in rows[-1]["note"]


# --- workers that die, Ctrl-C ------------------------------------------------------------------


def test_a_killed_workers_trial_is_marked_failed_and_a_rerun_continues(
    synthetic_root, tmp_path, capsys
):
    space = {"data.augment": {"type": "categorical", "choices": ["basic", "none"]}}
    argv = ["--space", str(write_space(tmp_path, space)), "--study", "kill", "--trials", "1"]
    argv += ["--heartbeat", "1", "--pruner", "none", "--sweep_dir", str(tmp_path / "sweeps")]
    argv += base_args(synthetic_root, "--trainer.max_epochs", "4")
    proc = subprocess.Popen(
        worker_command(argv), env=worker_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for(lambda: reported_trial(tmp_path, "kill"), 600, "an epoch's report", proc)
        proc.kill()  # SIGKILL: no chance to tidy up
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert study_of(tmp_path, "kill").get_trials()[0].state == TrialState.RUNNING
    killed_at = datetime.datetime.now()
    assert sweep_main(argv) == 0  # the same command again
    trials = study_of(tmp_path, "kill").get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    marked = trials[0].datetime_complete - killed_at
    assert marked < datetime.timedelta(seconds=60)  # 3 heartbeats of 1 s, and the rerun's start
    assert trials[1].datetime_start >= trials[0].datetime_complete
    assert "trial 1 complete" in capsys.readouterr().out
    assert (
        sweep_main(["--summary", "--study", "kill", "--sweep_dir", str(tmp_path / "sweeps")]) == 0
    )
    rows = list(
        csv.DictReader((tmp_path / "sweeps" / "kill" / "summary" / "leaderboard.csv").open())
    )
    assert rows[-1]["state"] == "FAIL" and rows[-1]["note"] == "its worker stopped (no heartbeat)"


def test_ctrl_c_stops_the_worker_cleanly_and_marks_its_trial(synthetic_root, tmp_path):
    space = {"data.augment": {"type": "categorical", "choices": ["basic", "none"]}}
    argv = ["--space", str(write_space(tmp_path, space)), "--study", "int", "--trials", "2"]
    argv += ["--pruner", "none", "--sweep_dir", str(tmp_path / "sweeps")]
    argv += base_args(synthetic_root, "--trainer.max_epochs", "20")
    proc = subprocess.Popen(
        worker_command(argv), env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: reported_trial(tmp_path, "int"), 600, "an epoch's report", proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "stopped by Ctrl-C: the running trial is marked failed" in err
    assert "Traceback" not in err
    [trial] = study_of(tmp_path, "int").get_trials()
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["fail_reason"] == "interrupted (Ctrl-C)"
    assert Path(trial.user_attrs["runs"][0]).is_dir()


# --- PostgreSQL: two workers on one study; optuna-dashboard ----------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


@pytest.fixture(scope="module")
def postgres_url():
    """A PostgreSQL server of its own, on a free port, for this module; its SQLAlchemy URL."""
    import tempfile

    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="petseg-pg-"))
    if os.geteuid() == 0:  # the server refuses to run as root
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()
    run = dict(check=True, capture_output=True, text=True, timeout=120)
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "petseg", "--auth=trust"], **run)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    log = folder / "server.log"
    subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "start"], **run
    )
    try:
        yield f"postgresql://petseg@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], **run)
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_share_a_postgresql_study(postgres_url, synthetic_root, tmp_path):
    space = {"model.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}
    argv = ["--space", str(write_space(tmp_path, space)), "--study", "pg", "--trials", "4"]
    argv += ["--storage", postgres_url, "--sampler", "random", "--pruner", "none"]
    argv += ["--test", "false", *base_args(synthetic_root)]
    workers = [
        subprocess.Popen(
            worker_command(argv),
            env=worker_env(),
            cwd=tmp_path,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=900) for w in workers]
    for w, (_, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err[-3000:]
    trials = optuna.load_study(study_name="pg", storage=postgres_url).get_trials()
    # the total, shared; a trial that two workers' counts let in as well steps aside, untrained
    surplus = [t for t in trials if t.user_attrs.get("fail_reason") == SURPLUS]
    assert all(t.state == TrialState.FAIL and "runs" not in t.user_attrs for t in surplus)
    trials = [t for t in trials if t not in surplus]
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    pids = {str(w.pid) for w in workers}
    assert {t.user_attrs["worker"].split(":")[-1] for t in trials} == pids  # both trained
    runs = [Path(tmp_path, r) for t in trials for r in t.user_attrs["runs"]]
    assert len(set(runs)) == 4 and all((r / "unet.pth").is_file() for r in runs)
    out = tmp_path / "summary"
    assert (
        sweep_main(["--summary", "--study", "pg", "--storage", postgres_url, "--output", str(out)])
        == 0
    )
    assert len(list(csv.DictReader((out / "leaderboard.csv").open()))) == 4


def test_optuna_dashboard_serves_the_studys_trials(grid_sweep):
    folder, _, _ = grid_sweep
    url = f"sqlite:///{folder / 'sweeps' / 'curve' / 'study.db'}"
    port = _free_port()
    dashboard = shutil.which("optuna-dashboard") or str(
        Path(sys.executable).parent / "optuna-dashboard"
    )
    command = [dashboard, url, "--host", "127.0.0.1", "--port", str(port)]
    if not Path(dashboard).is_file():
        command = [
            sys.executable,
            "-c",
            "from optuna_dashboard._cli import main; main()",
            *command[1:],
        ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:

        def studies():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as r:
                    return json.load(r)["study_summaries"]
            except OSError:
                return None

        listed = wait_for(studies, 120, "optuna-dashboard to answer", server)
        [entry] = [s for s in listed if s["study_name"] == "curve"]
        api = f"http://127.0.0.1:{port}/api/studies/{entry['study_id']}"
        with urllib.request.urlopen(api, timeout=10) as r:
            detail = json.load(r)
        served = {t["number"]: t for t in detail["trials"]}
        for t in study_of(folder, "curve").get_trials():
            assert served[t.number]["state"] == "Complete"
            assert served[t.number]["values"] == [pytest.approx(t.value)]
            assert len(served[t.number]["intermediate_values"]) == 1  # the first seed's epoch
    finally:
        server.terminate()
        server.wait(30)


# --- the committed spaces, and a quick --help -------------------------------------------------

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["quick_recipe.yaml", "round9.yaml"])
def test_the_committed_spaces_are_valid_for_petseg_train(name, synthetic_root, tmp_path):
    from petseg.sweep import check_options, grid_of, load_space

    space = load_space(CONFIGS / "sweeps" / name)
    if name == "round9.yaml":
        assert grid_of(space) == {"data.train_limit": [90, 135, 270]}
    args = ["--config", str(CONFIGS / "quick.yaml"), "--data.root", str(synthetic_root)]
    check_options(
        [*args, "--save_dir", str(tmp_path / "s"), "--log_dir", str(tmp_path / "l")], space
    )


def test_sweep_help_starts_without_torch_lightning_or_optuna():
    code = (
        "import sys\nfrom petseg.cli import sweep_main\n"
        "try: sweep_main(['--help'])\nexcept SystemExit: pass\n"
        "print([m for m in ('torch', 'lightning', 'optuna') if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "--space" in done.stdout and "petseg-train" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_opening_a_storage_retries_the_schema_race_of_workers_started_together(monkeypatch):
    import optuna
    from sqlalchemy.exc import IntegrityError

    from petseg import sweep
    from petseg.errors import PetsegError

    calls = []

    def storage(url, **kwargs):
        calls.append(url)
        if len(calls) == 1:  # another worker created the tables a moment earlier
            raise IntegrityError("CREATE TYPE", {}, Exception("duplicate key value"))
        return "the storage"

    monkeypatch.setattr(optuna.storages, "RDBStorage", storage)
    monkeypatch.setattr(sweep.time, "sleep", lambda seconds: None)
    assert sweep.open_storage("postgresql://db/x") == "the storage" and len(calls) == 2
    calls.clear()

    def always(url, **kwargs):
        calls.append(url)
        raise IntegrityError("CREATE TYPE", {}, Exception("duplicate key value"))

    monkeypatch.setattr(optuna.storages, "RDBStorage", always)
    with pytest.raises(PetsegError, match="cannot open it"):  # a lasting error still stops
        sweep.open_storage("postgresql://db/x")
    assert len(calls) == sweep.SCHEMA_ATTEMPTS


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"trials": 0}, "--trials 0 is out of range"),
        ({"trials": 2, "seeds": 0}, "--seeds 0 is out of range"),
        ({"trials": 2, "sampler": "grid2"}, "--sampler 'grid2' is not one of: tpe, random, grid"),
    ],
)
def test_a_sweep_config_from_python_is_checked_as_the_parser_checks(options, message):
    from petseg.errors import PetsegError
    from petseg.sweep import SweepConfig

    with pytest.raises(PetsegError, match=message):
        SweepConfig(space={}, study="s", **options)


def test_a_trial_created_after_the_total_was_taken_steps_aside():
    """Two workers that count the study at the same moment both create a trial; the later one
    (by Optuna's number) sees the earlier and is not trained."""
    from petseg.sweep import _is_surplus

    study = optuna.create_study()
    for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
        study.add_trial(
            optuna.trial.create_trial(state=state, value=0.5 if state.name == "COMPLETE" else None)
        )
    running = study.ask()  # another worker's trial, still training
    late = study.ask()
    assert not _is_surplus(running, total=3)  # complete + pruned: 2 before it; a failure is not one
    assert _is_surplus(late, total=3)  # complete + pruned + running: the total is taken
    assert not _is_surplus(late, total=4)
