"""The pytest11 entry point of installs made before the plugin moved to `emulator.testing.pytest_plugin`.

An editable or older install keeps its entry-point metadata until it is reinstalled; this keeps its
fixtures working meanwhile. New installs register `emulator.testing.pytest_plugin` directly.
"""
from emulator.testing.pytest_plugin import (
    lookoutvision_client,
    lookoutvision_emulator,
    lookoutvision_server,
    s3_client,
)

__all__ = ["lookoutvision_client", "lookoutvision_emulator", "lookoutvision_server", "s3_client"]
