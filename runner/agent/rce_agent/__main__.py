"""Entry point: ``python3 /opt/rce/rce_agent`` (the directory) runs this file.

Python puts the package directory itself first on ``sys.path``; the package is
imported by name from its parent instead, so no module here can be shadowed by a
sibling name.
"""

import os
import sys

sys.path[0] = os.path.dirname(os.path.abspath(sys.path[0]))

from rce_agent.main import main  # noqa: E402 - after the path fix above

sys.exit(main())
