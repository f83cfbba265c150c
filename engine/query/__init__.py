"""The query: a selection answered over capture files, as one pcap or pcapng stream.

Owns ``plan`` (per file: from its index or by a scan; the files merged in time order; estimates),
the read paths, each named by what it is for: ``per_record`` (each record read and decided on its
own: the reference the others are tested against), ``many_candidates`` (an indexed classic pcap
file with many candidates: read in bulk, decided with numpy), ``few_candidates`` (an indexed file
with few: read record by record in one loop), ``unindexed`` (a classic pcap file without an
index, the live file: scanned in bulk); and what they share: ``pieces`` (encoded records merged
across files and ended at the limits), ``answer`` (the limits), ``damage`` (damage named or cut).
"""
