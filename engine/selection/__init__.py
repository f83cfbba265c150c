"""What a query asks for and which packets and flows it takes.

Owns ``selectors`` (``Selection`` and the seed's ``FlowQuery``: addresses, networks, ports,
protocol, Community ID, window), ``match`` (``SelectionMatcher``: a selection's per-packet and
per-flow tests) and ``exact`` (``Matcher``: the seed's exact flow, by tuple). Every read path of
the query and the index's lookups decide with these, so they give one answer.
"""
