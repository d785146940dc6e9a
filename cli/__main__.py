"""``python -m cli`` is ``rce``."""

from cli.main import main

main()
