"""``petseg-compare``: per-epoch curves of several runs in one PNG, and a markdown table."""

from __future__ import annotations

from pathlib import Path

from petseg.cli import command_parser, run_command


def parser():
    parser = command_parser(
        "petseg-compare",
        "Compare training runs: one PNG with per-epoch train (dashed) and valid "
        "(solid) Dice and loss of every run on shared axes, and a markdown table (best valid "
        "Dice and its epoch, test Dice where logged). RUN is a run folder (logs/unet/version_0) "
        "or a folder of runs (logs/, logs/unet), where the newest version of each is used.",
    )
    parser.add_argument("runs", nargs="*", default=["logs"], help="Run folders (default: logs).")
    parser.add_argument(
        "--output",
        default="comparisons/comparison.png",
        help="The PNG (its folder is made if needed); the table goes beside it as .md.",
    )
    parser.add_argument("--title", default="", help="A title over the plots.")
    return parser


def _compare(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    from petseg.compare import find_runs, load_runs, markdown_table, plot_runs

    runs = load_runs(find_runs(args.runs or ["logs"]))
    png = plot_runs(runs, Path(args.output), args.title)
    table = markdown_table(runs)
    png.with_suffix(".md").write_text(table)
    print(table, end="")
    print(f"curves             {png}\ntable              {png.with_suffix('.md')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("petseg-compare", argv, _compare)
