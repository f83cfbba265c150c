"""The merge: several nodes' capture streams interleaved by packet time into one answer.

Owns ``merger`` (``Merger``: classic pcap when every stream allows it, else pcapng keeping each
interface's own time resolution; ended at the asked limits). The streams are read by
``engine.formats.stream``.
"""
