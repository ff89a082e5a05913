import sys

from tregsim.cli import main

sys.exit(main())
