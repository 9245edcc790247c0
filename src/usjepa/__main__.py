import sys

from usjepa.cli import main

sys.exit(main())
