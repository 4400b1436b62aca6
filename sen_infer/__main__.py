import sys

from sen_infer.cli import main

sys.exit(main())
