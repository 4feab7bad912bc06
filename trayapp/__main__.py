"""`python -m trayapp` runs the kubetray command line."""

from trayapp.cli import main

raise SystemExit(main())
