import sys

from evalwatch.cli import main

sys.exit(main())
