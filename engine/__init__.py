"""octguide engine: pipeline stages, scheduling, measurements, configuration and CLI."""

__version__ = "0.1.0"
