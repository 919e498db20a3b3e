"""``python -m xmargin ...``: the same as the installed ``xmargin`` command."""

from xmargin.cli.main import main

main()
