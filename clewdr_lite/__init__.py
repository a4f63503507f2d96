"""clewdr-lite: a lean LLM gateway for the devices you already own."""

__version__ = "0.1.0"
