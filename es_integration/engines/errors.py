"""The errors of the local engines, each meant for a human: the CLI prints it and exits 1."""


class EngineError(RuntimeError):
    """Raised with a message meant for a human; the CLI prints it and exits 1."""


class DownloadRefused(EngineError):
    """Maven (or the network on the way) refused a download: an HTTP error, no route, a timeout.
    Unlike a checksum mismatch this says nothing is wrong with the file, only that it cannot be
    had here, so optional downloads (plugins) may go without it."""
