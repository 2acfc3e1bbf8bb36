import sys

from fewzero.cli import main

sys.exit(main())
