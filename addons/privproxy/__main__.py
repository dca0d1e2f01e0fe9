import sys

from privproxy.cli import main

sys.exit(main())
