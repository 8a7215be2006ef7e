"""`python -m edgetune` (and `accelerate launch -m edgetune ...`) run the CLI."""

from edgetune.cli.main import main

if __name__ == "__main__":
    main()
