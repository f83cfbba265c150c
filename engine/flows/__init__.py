"""Flow listings: the flows a selection names in a window, from the files' flow tables.

Owns ``listing`` (rows merged across files, totals, histograms; files without an index get one
built in memory; ICMP rows split by message), ``rows`` (a listing's shapes: the merged rows, the
answer's columns) and ``text`` (many flow rows' addresses written as text at once).
"""
