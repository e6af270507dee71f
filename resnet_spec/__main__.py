"""``python -m resnet_spec``: the ``resnet-spec`` command (:mod:`resnet_spec.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
