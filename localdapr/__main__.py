"""`python -m localdapr up ...` (the launcher) and `python -m localdapr sidecar ...` (one sidecar)."""

from localdapr.launch.cli import main

raise SystemExit(main())
