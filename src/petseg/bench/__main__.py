"""``python -m petseg.bench``: petseg-bench without an installed console script (as on a
machine that receives the repository with ``PYTHONPATH=src``)."""

from petseg.bench import main

raise SystemExit(main())
