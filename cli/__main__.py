"""Run the command-line client: python -m cli --help."""

from cli.main import main

raise SystemExit(main())
