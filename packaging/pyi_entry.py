"""The frozen executable's entry point: the CLI's main (cli.py uses relative imports, so it cannot be the script)."""

import sys

from dstack_inspector.cli import main

if __name__ == "__main__":
    sys.exit(main())
