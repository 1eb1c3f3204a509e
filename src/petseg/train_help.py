"""``petseg-train --help`` without importing torch or Lightning: petseg's own options first, then
the model's and the data's, read from the signatures and docstrings of ``SegmentationModule``
and ``PetDataModule`` (the source LightningCLI builds those options from), and a pointer to the
Trainer's. ``petseg-train --help-all`` prints LightningCLI's complete help.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).parent
# petseg-train's own options: (flag, value shown, default, help); TrainCLI adds the same.
OWN_OPTIONS: tuple[tuple[str, str, str | None, str], ...] = (
    ("--arch", "{unet,resnet34_unet}", "resnet34_unet", "Architecture to train."),
    ("--config", "FILE", None, "A YAML file of options (configs/quick.yaml); may be repeated."),
    (
        "--save_dir",
        "SAVE_DIR",
        "saved_models",
        "Checkpoints, weights and test report go to SAVE_DIR/<arch>/version_N/.",
    ),
    ("--log_dir", "LOG_DIR", "logs", "TensorBoard logs: LOG_DIR/<arch>/version_N/."),
    (
        "--ckpt_path",
        "CKPT_PATH",
        None,
        "Resume training from this checkpoint; 'last' resumes the newest run of --arch. "
        "A checkpoint inside SAVE_DIR/<arch>/version_N/ continues that run's folders.",
    ),
    ("--seed_everything", "SEED", "42", "Seeds Python, NumPy, torch and the loader workers."),
    (
        "--verbose",
        "",
        None,
        "Tracebacks on errors, and all of Lightning's messages (in a config file: verbose: true).",
    ),
    ("--print_config", "", None, "Print the complete configuration as YAML and exit."),
)
SOURCES = (  # (option group, file, class)
    ("model", "module.py", "SegmentationModule"),
    ("data", "data/datamodule.py", "PetDataModule"),
)
HIDDEN = {"model.arch"}  # set from --arch


def signature_options(source: Path, class_name: str) -> list[tuple[str, str, str, str]]:
    """``(name, type, default, help)`` of each ``__init__`` argument of a class, read from its
    source: the annotation and default as written, the help from the ``Args:`` docstring."""
    tree = ast.parse(source.read_text())
    names = _NameResolver(tree)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    helps = _docstring_args(ast.get_docstring(cls) or "")
    args = init.args.args[1:]  # without self
    defaults = [None] * (len(args) - len(init.args.defaults)) + list(init.args.defaults)
    return [
        (
            arg.arg,
            names.text(arg.annotation) if arg.annotation else "",
            names.text(default) if default is not None else "",
            helps.get(arg.arg, ""),
        )
        for arg, default in zip(args, defaults, strict=True)
    ]


class _NameResolver:
    """Writes an annotation or default with petseg's named constants and ``Literal`` aliases
    (``LossName``, ``DEFAULT_ROOT``) replaced by their values, found in the source file or in
    the petseg module it imports them from."""

    def __init__(self, tree: ast.Module) -> None:
        self.values = _assignments(tree)
        self.origins = {
            alias.asname or alias.name: node.module
            for node in tree.body
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("petseg")
            for alias in node.names
        }

    def value(self, name: str) -> ast.expr | None:
        if name not in self.values and name in self.origins:
            module = PACKAGE.joinpath(*self.origins[name].split(".")[1:])
            file = module / "__init__.py" if module.is_dir() else module.with_suffix(".py")
            if file.is_file():
                self.values |= {k: v for k, v in _assignments(ast.parse(file.read_text())).items()
                                if k not in self.values}  # fmt: skip
        return self.values.get(name)

    def text(self, node: ast.expr) -> str:
        class Substitute(ast.NodeTransformer):
            def visit_Name(inner, name: ast.Name) -> ast.AST:
                found = self.value(name.id)
                return found if found is not None else name

        return ast.unparse(Substitute().visit(ast.parse(ast.unparse(node), mode="eval")))


def _assignments(tree: ast.Module) -> dict[str, ast.expr]:
    """Module-level ``NAME = "text"``, ``NAME = 3`` and ``NAME = Literal[...]``."""
    found: dict[str, ast.expr] = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        value = getattr(node, "value", None)
        if not isinstance(target, ast.Name) or value is None:
            continue
        literal = isinstance(value, ast.Subscript) and ast.unparse(value.value) == "Literal"
        if isinstance(value, ast.Constant) or literal:
            found[target.id] = value
    return found


def _docstring_args(docstring: str) -> dict[str, str]:
    """``{name: text}`` of a Google-style ``Args:`` section."""
    helps: dict[str, str] = {}
    section = docstring.split("Args:", 1)[1] if "Args:" in docstring else ""
    name = None
    for line in section.splitlines():
        match = re.match(r"^    (\w+): (.*)$", line)
        if match:
            name, helps[match[1]] = match[1], match[2]
        elif line.startswith("        ") and name:
            helps[name] += " " + line.strip()
        elif line.strip():
            break  # the next section
    return {k: " ".join(v.replace("``", "").split()) for k, v in helps.items()}


def _entry(flag: str, detail: str) -> str:
    wrapped = textwrap.wrap(detail, 70) or [""]
    head = f"  {flag}"
    if len(head) < 28:
        lines = [f"{head:<28}{wrapped[0]}", *(" " * 28 + w for w in wrapped[1:])]
    else:
        lines = [head, *(" " * 28 + w for w in wrapped)]
    return "\n".join(lines)


def quick_help() -> str:
    """The text of ``petseg-train --help``."""
    out = [
        "usage: petseg-train [--arch ARCH] [--config FILE] [--model.OPTION VALUE ...]",
        "                    [--data.OPTION VALUE ...] [--trainer.OPTION VALUE ...]",
        "",
        "Train UNet or ResNet34-UNet on Oxford-IIIT Pet, then test the best checkpoint. Options",
        "can also come from a YAML file (--config configs/full.yaml).",
        "",
        "petseg-train options:",
    ]
    for flag, value, default, text in OWN_OPTIONS:
        shown = f"{text} (default: {default})" if default is not None else text
        out.append(_entry(f"{flag} {value}".rstrip(), shown))
    for group, file, class_name in SOURCES:
        out += ["", f"{group} options (--{group}.*, {class_name}):"]
        for name, kind, default, text in signature_options(PACKAGE / file, class_name):
            if f"{group}.{name}" in HIDDEN:
                continue
            detail = f"{text} (type: {kind}, default: {default})"
            out.append(_entry(f"--{group}.{name} {name.upper()}", detail))
    out += [
        "",
        "trainer options (--trainer.*): Lightning's Trainer, e.g. --trainer.max_epochs 50,",
        "  --trainer.max_time 00:00:23:00, --trainer.accelerator cpu, --trainer.devices 2,",
        "  --trainer.precision bf16-mixed. petseg-train --help-all lists every option with its",
        "  type and default (it imports Lightning, so it takes a few seconds more).",
    ]
    return "\n".join(out) + "\n"
