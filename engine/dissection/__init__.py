"""Dissection: the flow fields of frames (link layer -> IP -> ports) and the Community ID of flows.

Owns ``packet`` (one frame, the per-packet reference), ``fields`` (every record of a file at once,
with numpy), ``recordtable`` (where every record of a file is, bytes gathered from many at once),
``native`` (the per-record loops compiled by numba) and ``communityid`` (Community ID v1).
"""
