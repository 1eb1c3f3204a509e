"""The valid range of every numeric option, in one place.

``SegmentationModule`` and ``PetDataModule`` take these types in their signatures, so
LightningCLI (and every ``petseg-*`` parser) refuses a value out of range while parsing, before a
run folder exists, with one kind of message: ``Parser key "model.gamma": Not of type
DecayFactor: ... does not conform to restriction v>0``. The Trainer's own options are Lightning's
signature; ``check_trainer_options`` gives them ranges at the same moment.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Callable, Mapping
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from jsonargparse.typing import (
    ClosedUnitInterval,
    NonNegativeFloat,
    NonNegativeInt,
    OpenUnitInterval,
    PositiveFloat,
    PositiveInt,
    restricted_number_type,
)

from petseg.checkpoints import MAX_BASE_CHANNELS, MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from petseg.errors import PetsegError, first_line

ImageSize = restricted_number_type(
    "ImageSize", int, [(">=", MIN_IMAGE_SIZE), ("<=", MAX_IMAGE_SIZE)], join="and"
)
Width = restricted_number_type("Width", int, [(">=", 1), ("<=", MAX_BASE_CHANNELS)], join="and")
Momentum = restricted_number_type("Momentum", float, [(">=", 0), ("<", 1)], join="and")
DecayFactor = restricted_number_type("DecayFactor", float, [(">", 0), ("<=", 1)], join="and")

__all__ = [
    "ClosedUnitInterval",
    "DecayFactor",
    "ImageSize",
    "Momentum",
    "NonNegativeFloat",
    "NonNegativeInt",
    "OpenUnitInterval",
    "PositiveFloat",
    "PositiveInt",
    "Width",
    "check_arguments",
    "check_trainer_options",
    "plain",
]

_MAX_TIME = re.compile(r"^\s*(\d+):(\d+):(\d+):(\d+)\s*$")  # Lightning's DD:HH:MM:SS


def plain(value: Any) -> Any:
    """A parsed restricted number (a subclass of int or float) as the plain int or float: what
    goes into a checkpoint must load with ``weights_only=True``."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


def check_arguments(function: Callable, values: Mapping[str, Any], prefix: str) -> None:
    """For Python callers, the check the parser makes of the same signature: each of ``values``
    against its parameter's annotation in ``function`` (a ``Literal``'s choices, a restricted
    number's range, and finite), with one line naming ``--<prefix>.<name>`` (``--<name>`` when
    ``prefix`` is empty).

    Command lines are checked by jsonargparse while parsing; ``SegmentationModule`` and
    ``PetDataModule`` call this so that ``petseg.train({...})`` and direct construction meet
    the same ranges, from the same types.
    """
    hints = get_type_hints(function)
    for name, value in values.items():
        kind, option = hints.get(name), f"--{prefix}.{name}" if prefix else f"--{name}"
        members = get_args(kind) if get_origin(kind) in (Union, UnionType) else (kind,)
        if value is None and type(None) in members:
            continue
        kind = next((m for m in members if m is not type(None)), None)
        if get_origin(kind) is Literal:
            if value not in get_args(kind):
                choices = ", ".join(map(str, get_args(kind)))
                raise PetsegError(f"{option} {value!r} is not one of: {choices}")
        elif isinstance(kind, type) and issubclass(kind, (int, float)) and kind not in NUMBERS:
            try:  # a jsonargparse restricted number: calling it checks the value
                kind(value)
                finite = math.isfinite(value)
            except (TypeError, ValueError) as err:
                message = f"{option} {value!r} is out of range ({first_line(err)})"
                raise PetsegError(message) from None
            if not finite:
                raise PetsegError(f"{option} {value!r} is out of range: it must be finite")


NUMBERS = (int, float, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and math.isfinite(value)


def _int_at_least(low: int, none_ok: bool = True):
    def check(value: Any) -> bool:
        return (none_ok and value is None) or (_is_int(value) and value >= low)

    return check, f"an integer >= {low}"


def _count_or_fraction(value: Any) -> bool:
    """Lightning's limit_*_batches: a number of batches (int >= 0) or a fraction in [0, 1]."""
    if value is None or (_is_int(value) and value >= 0):
        return True
    # the parser reads "2" as 2.0 here (float comes first in Lightning's type); Lightning counts
    # whole floats above 1 as batches
    fraction_or_whole = isinstance(value, float) and (value <= 1 or value.is_integer())
    return fraction_or_whole and math.isfinite(value) and value >= 0


def _val_check_interval(value: Any) -> bool:
    if value is None or (_is_int(value) and value >= 1):
        return True
    if isinstance(value, float):
        return math.isfinite(value) and 0 < value <= 1
    return isinstance(value, (str, Mapping, datetime.timedelta)) and _duration(value) is not None


def _clip(value: Any) -> bool:
    return value is None or (_is_number(value) and value >= 0)


def _duration(value: Any) -> datetime.timedelta | None:
    """Lightning's duration forms (``DD:HH:MM:SS``, a mapping of timedelta fields, a timedelta)
    as a positive timedelta, or None."""
    try:
        if isinstance(value, datetime.timedelta):
            duration = value
        elif isinstance(value, str):
            match = _MAX_TIME.match(value)
            if not match:
                return None
            days, hours, minutes, seconds = map(int, match.groups())
            duration = datetime.timedelta(days, hours=hours, minutes=minutes, seconds=seconds)
        elif isinstance(value, Mapping):
            if not all(_is_number(v) and v >= 0 for v in value.values()):
                return None
            duration = datetime.timedelta(**value)
        else:
            return None
    except (TypeError, ValueError, OverflowError):
        return None
    return duration if duration > datetime.timedelta(0) else None


_TRAINER_RANGES = {
    "max_epochs": (lambda v: v is None or (_is_int(v) and v >= -1), "an integer >= 0 (-1: none)"),
    "min_epochs": _int_at_least(0),
    "max_steps": (lambda v: _is_int(v) and v >= -1, "an integer >= 0 (-1: no limit)"),
    "min_steps": _int_at_least(0),
    "max_time": (
        lambda v: v is None or _duration(v) is not None,
        "a positive duration DD:HH:MM:SS (e.g. 00:00:23:00) or a mapping like {minutes: 23}",
    ),
    "limit_train_batches": (_count_or_fraction, "a number of batches >= 0 or a fraction 0..1"),
    "limit_val_batches": (_count_or_fraction, "a number of batches >= 0 or a fraction 0..1"),
    "limit_test_batches": (_count_or_fraction, "a number of batches >= 0 or a fraction 0..1"),
    "limit_predict_batches": (_count_or_fraction, "a number of batches >= 0 or a fraction 0..1"),
    "overfit_batches": (_count_or_fraction, "a number of batches >= 0 or a fraction 0..1"),
    "val_check_interval": (
        _val_check_interval,
        "a number of batches >= 1, a fraction of an epoch in (0, 1], or a positive duration",
    ),
    "check_val_every_n_epoch": _int_at_least(1),
    "num_sanity_val_steps": _int_at_least(-1),
    "log_every_n_steps": _int_at_least(1),
    "accumulate_grad_batches": _int_at_least(1, none_ok=False),
    "gradient_clip_val": (_clip, "a number >= 0"),
    "num_nodes": _int_at_least(1, none_ok=False),
    "reload_dataloaders_every_n_epochs": _int_at_least(0, none_ok=False),
}


def check_trainer_options(trainer: Mapping[str, Any]) -> None:
    """Refuse the Trainer options that would fail late or silently train wrong, in one line.

    Called once the arguments are parsed, before any folder is made or data read.
    """
    for name, (valid, expected) in _TRAINER_RANGES.items():
        if name in trainer and not valid(trainer[name]):
            raise PetsegError(f"--trainer.{name} {trainer[name]!r} is out of range; use {expected}")


MAX_YAML_NODES = 100_000  # a petseg config has a few hundred; aliases may expand one to billions


def bounded_yaml_load(stream: Any) -> Any:
    """jsonargparse's YAML loader, but a document whose aliases expand to more than
    ``MAX_YAML_NODES`` nodes (a "billion laughs" file of a few hundred bytes) is refused before
    anything expands it (the parser copies and dumps configs, which would expand it in memory)."""
    from jsonargparse._loaders_dumpers import yaml_load

    if isinstance(stream, str) and "*" in stream:  # only aliases can expand
        nodes = _expanded_nodes(stream)
        if nodes > MAX_YAML_NODES:
            raise PetsegError(
                f"a YAML config expands to more than {MAX_YAML_NODES} values through its "
                "aliases (&name / *name); write the values out or use fewer aliases"
            )
    return yaml_load(stream)


def _expanded_nodes(text: str) -> int:
    """How many nodes the YAML ``text`` holds once every alias is expanded (without expanding)."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return 0  # not for this check to judge: the real loader reports it
    if root is None:
        return 0
    size: dict[int, int] = {}
    stack = [(root, False)]
    while stack:  # post-order, iteratively: nesting depth costs no recursion
        node, children_done = stack.pop()
        if id(node) in size:
            continue
        if isinstance(node, yaml.ScalarNode):
            size[id(node)] = 1
            continue
        children = (
            [n for pair in node.value for n in pair]
            if isinstance(node, yaml.MappingNode)
            else list(node.value)
        )
        if children_done:
            size[id(node)] = 1 + sum(size.get(id(c), 0) for c in children)
            if size[id(node)] > MAX_YAML_NODES:
                return size[id(node)]
        else:
            stack.append((node, True))
            stack += [(c, False) for c in children if id(c) not in size]
    return size[id(root)]
