"""The error of a run that cannot go on, raised by the method (a loss that is no longer finite) and by the run's
files (a folder that holds another run) alike; the scripts print its one-line message, not a traceback."""


class TrainingError(RuntimeError):
    """A run cannot go on (a NaN loss, an output folder holding another run); the message is one line."""
