"""Hiding Lightning's messages that are not a petseg user's business (``--verbose`` keeps them).

Only the messages listed here are dropped, each by its own text; every other warning and log
line still shows. petseg prints its own start line and end summary instead.
"""

from __future__ import annotations

import logging
import re
import warnings

# Log lines (Lightning's loggers) replaced by petseg's own start line and summary, or advice
# that does not apply: the "litlogger" tip, seeding, accelerators found, step estimation.
_LOG_LINES = re.compile(
    r"litlogger|^Seed set to|^(GPU|TPU|HPU) available|^Loading `train_dataloader` to estimate"
    r"|^`Trainer.fit` stopped: `max_epochs"
    r"|^Restoring states from the checkpoint|^Restored all states from the checkpoint"
)
# Warnings about Lightning's own internals, or about a small dataset being small.
_WARNINGS = (
    r".*isinstance.treespec, LeafSpec.*",  # a deprecation inside Lightning's own code
    r".*smaller than the logging interval.*",  # log_every_n_steps on a small dataset
    r".*does not have many workers.*",  # the cached path needs none
    r"Checkpoint directory .* exists and is not empty",  # only when a run is resumed
)


# The loggers that emit those lines (a record meets its own logger's filters first), and the
# package loggers whose handlers Lightning sets up.
_EMITTERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning.fabric.utilities.seed",
    "lightning.pytorch",
    "lightning.fabric",
)


class _DropListed(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _LOG_LINES.search(record.getMessage())


def quiet_lightning() -> None:
    """Install the filters (idempotent)."""
    for name in _EMITTERS:
        logger = logging.getLogger(name)
        for target in (logger, *logger.handlers):
            if not any(isinstance(f, _DropListed) for f in target.filters):
                target.addFilter(_DropListed())
    for message in _WARNINGS:
        warnings.filterwarnings("ignore", message=message)
