"""One exception type whose message is a single line: what is wrong and how to fix it."""


class ClippingEdgeError(Exception):
    """Raised for bad input. The CLI prints `error: <message>` and exits with status 2."""

