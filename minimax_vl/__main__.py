import sys

from minimax_vl.cli import main

sys.exit(main())
