"""One exception type for problems a user can fix; the CLI and dashboard show its message only."""


class ReasonlabError(Exception):
    """Bad input or environment, explained in one line (config field, file, checkpoint path).
    `field` is the config field at fault when there is one: the Launch form marks that input."""

    def __init__(self, message: str = "", field: str | None = None):
        super().__init__(message)
        self.field = field

    def __reduce__(self):  # pickled whole (a worker's error reaches its parent with its field)
        return type(self), (str(self), self.field)
