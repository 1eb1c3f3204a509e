"""The recipe files, ``configs/*.yaml``, wherever petseg is: installed or a source checkout.

An installed petseg (a wheel, or ``pip install -e .``) carries the checkout's ``configs/`` as the
package ``petseg.configs`` (``pyproject.toml`` maps it); a checkout used through
``PYTHONPATH=src`` has them beside ``src/``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def recipe(name: str) -> Path:
    """The path of ``configs/<name>`` (``"fast.yaml"``, ``"sweeps/round9.yaml"``)."""
    try:
        return Path(str(resources.files("petseg.configs").joinpath(name)))
    except ModuleNotFoundError:  # the source tree on sys.path, not installed
        return Path(__file__).resolve().parents[2] / "configs" / name
