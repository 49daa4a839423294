"""The one error of the data sources."""


class DatasetError(ValueError):
    """A dataset cannot be loaded or has the wrong content; the message says how to fix it."""
