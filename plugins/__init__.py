"""The built-in origin plugins. Each registers through the `edge.plugins` entry point in setup.cfg,
exactly as a third-party plugin would."""
