"""``python -m ledger`` is the ``tongjie`` command."""

from ledger.cli import main

main()
