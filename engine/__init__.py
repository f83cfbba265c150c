"""The pcap engine: read, dissect, index and query captures. No Django in here.

Packages by concern, each above the ones it uses (an import-linter ``layers`` contract in
pyproject.toml keeps it so): ``merge`` and ``flows`` above ``query``, above ``index``, above
``selection``, above ``dissection``, above ``formats``. ``durable`` (atomic file writes, locks)
and ``compress`` (a capture into the zstd seekable format) serve the filer.
"""
