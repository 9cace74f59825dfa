"""``python -m robustbench_ibn`` is ``robust-eval`` (handy under torchrun)."""

import sys

from .cli.eval import main

sys.exit(main())
