"""Test support: a real emulator in-process (`LocalEmulator`), ``mock_lookoutvision`` and the pytest plugin.

``emulator.testing.LocalEmulator`` and ``emulator.mock.mock_lookoutvision`` are the documented
import paths; the plugin is registered as the ``lookoutvision`` pytest11 entry point.
"""
from emulator.testing.local import TEST_CREDENTIALS, LocalEmulator

__all__ = ["TEST_CREDENTIALS", "LocalEmulator"]
