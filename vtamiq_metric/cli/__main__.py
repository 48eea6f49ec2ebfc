"""``python -m vtamiq_metric.cli`` (and ``torchrun -m vtamiq_metric.cli``) runs the ``vtamiq`` command."""

import sys

from . import main

sys.exit(main())
