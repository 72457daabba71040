"""``python -m pau.experiments``."""

from .cli import main

raise SystemExit(main())
