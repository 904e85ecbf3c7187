import sys

from rnaret.cli import main

sys.exit(main())
