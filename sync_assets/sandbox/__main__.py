"""``python -m sync_assets.sandbox --data-dir D [options]``: the same as ``sync-assets sandbox [options]``."""

import sys

from sync_assets.sandbox.config import parse_command_line
from sync_assets.sandbox.server import serve

serve(parse_command_line(sys.argv[1:], program="python -m sync_assets.sandbox"))
