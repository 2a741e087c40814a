"""``python -m loratwin``: the same entry point as the ``loratwin`` console script."""

from loratwin.cli.app import main

main()
