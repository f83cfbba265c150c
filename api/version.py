"""Product and API versions (semantic versioning), reported by /ping and --version."""

VERSION = "1.0.0"
# The HTTP API's contract; a major bump means an incompatible change for clients.
API_VERSION = "1.0.0"
