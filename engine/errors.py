"""One exception type for problems a user can fix; the CLI and dashboard show its message only."""


class ReasonlabError(Exception):
    """Bad input or environment, explained in one line (config field, file, checkpoint path)."""
