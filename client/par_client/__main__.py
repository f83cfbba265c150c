"""``python -m par_client``: the same as the ``par`` command."""

import sys

from par_client.cli import main

sys.exit(main())
