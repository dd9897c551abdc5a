import sys

from mamlconv.cli import main

sys.exit(main())
