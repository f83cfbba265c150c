"""How the OpenAPI document describes downloads, so client generators keep them as bytes."""

from __future__ import annotations

# The captures' own media types. Generators know only a few (openapi-python-client: JSON, text/*
# and application/octet-stream) and drop a response in any other, so every capture response is
# also declared as application/octet-stream: the same bytes, kept as a binary download.
CAPTURE_TYPES = ("application/vnd.tcpdump.pcap", "application/x-pcapng")
BINARY = {"type": "string", "format": "binary"}


def binary_downloads(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: capture responses also as ``application/octet-stream``."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                if any(kind in content for kind in CAPTURE_TYPES):
                    content.setdefault("application/octet-stream", {"schema": dict(BINARY)})
    return result
