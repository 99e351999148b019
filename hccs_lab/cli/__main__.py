"""`python -m hccs_lab.cli ...` is the `hccs-lab` command."""
import sys

from . import main

sys.exit(main())
