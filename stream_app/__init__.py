"""spcwatch runtime: settings, codecs, topics, sinks, the Faust app and the CLI."""

__version__ = "0.1.0"
