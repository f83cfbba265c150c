"""The pcap engine: read, dissect, index and query captures. No Django in here."""
