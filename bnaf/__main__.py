import sys

from bnaf.cli import main

sys.exit(main())
