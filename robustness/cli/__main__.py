"""`python -m robustness.cli` runs `robust`."""

from robustness.cli.main import main

main()
