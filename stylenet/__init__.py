"""stylenet: train feed-forward style-transfer networks and run them."""

__version__ = "0.1.0"


class StylenetError(Exception):
    """An error the user can fix; its message says how. The CLI prints it as one line and exits 2."""
