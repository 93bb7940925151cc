"""``python -m unidl ...``: the same command line as the ``unidl`` console script."""
from .cli import main

raise SystemExit(main())
