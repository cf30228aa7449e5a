"""reasonlab's library: tasks, models, sampling, training loops, evaluation and the run store."""

__version__ = "0.1.0"
