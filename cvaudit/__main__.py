"""``python -m cvaudit`` (and ``accelerate launch -m cvaudit``) runs the CLI."""

from cvaudit.audit.cli import main

if __name__ == "__main__":
    main()
