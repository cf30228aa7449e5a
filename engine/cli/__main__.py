"""`python -m engine.cli` (and `accelerate launch -m engine.cli`): the `reasonlab` command."""

import sys

from engine.cli import main

sys.exit(main())
