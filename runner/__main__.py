"""`python -m runner WORKFLOW.json ...` from the repository root: the same as submit.py."""

import sys

from .cli import main

sys.exit(main())
