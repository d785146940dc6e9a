"""The agent package is imported as the image imports it: ``rce_agent`` from runner/agent."""

from __future__ import annotations

import sys
from pathlib import Path

AGENT_ROOT = str(Path(__file__).resolve().parents[3] / "runner" / "agent")
if AGENT_ROOT not in sys.path:
    sys.path.insert(0, AGENT_ROOT)
