"""Entry point: ``python3 /opt/rce/rce_agent/__main__.py``.

Run as a script (not through runpy, whose frames would skew the recursion depth a
forked Python child inherits). Python puts the package directory first on
``sys.path``; the package is imported by name from its parent instead.
"""

import os
import sys

sys.path[0] = os.path.dirname(os.path.abspath(sys.path[0]))

from rce_agent.main import main  # noqa: E402 - after the path fix above

sys.exit(main())
