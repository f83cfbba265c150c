"""par: ask a Packets at Rest collector for flows and pcaps from the command line."""

__version__ = "1.0.0"
