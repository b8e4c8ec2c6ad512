"""``python -m dgxsim`` runs the command line."""

import sys

from dgxsim.cli import main

sys.exit(main())
