"""``python -m sync_assets.sandbox [options]``: the same as ``sync-assets sandbox [options]``."""

import sys

from sync_assets.cli import app

app(["sandbox", *sys.argv[1:]], prog_name="sync-assets")
