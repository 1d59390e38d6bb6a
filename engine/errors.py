"""The single exception type the engine raises for inputs a user can fix."""


class EngineError(ValueError):
    """A rejected input: the message names the item and what is wrong with it.

    Subclasses ValueError so callers that already map ValueError to a 4xx keep working.
    """
