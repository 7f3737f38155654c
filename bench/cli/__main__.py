"""`python -m bench.cli ...`: the `bench` command (study workers start themselves this way)."""

import sys

from bench.cli import main

sys.exit(main())
