"""The test kit: emulator launchers, the fault layer, a pytest plugin and a local dev server."""
