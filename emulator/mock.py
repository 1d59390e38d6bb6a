"""The documented import path of ``mock_lookoutvision`` (the code is in `emulator.testing.mock`)."""
from emulator.testing.mock import LookoutVisionMock, aws_environment, mock_lookoutvision

__all__ = ["LookoutVisionMock", "aws_environment", "mock_lookoutvision"]
