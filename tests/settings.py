"""Settings of the test process: a collector's, with the node's app installed too.

A real process loads only its own role's app (parsite/settings.py). The tests run both roles' views
and commands in one process (``override_settings(ROOT_URLCONF="parsite.urls_node", PAR_ROLE="node")``,
``call_command("runfiler")``), so both apps are installed here; the servers and commands the tests
start as processes use parsite.settings, one role each.
"""

from parsite.settings import *  # noqa: F403
from parsite.settings import INSTALLED_APPS

if "node.apps.NodeConfig" not in INSTALLED_APPS:  # a process of the tests' own may be a node
    INSTALLED_APPS = [*INSTALLED_APPS, "node.apps.NodeConfig"]
