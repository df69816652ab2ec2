"""``python -m stackback``: the same as the ``stackback`` command."""

import sys

from stackback.cli import main

sys.exit(main())
