"""Service functions, one module per resource; importing this package registers all of them."""
from emulator.services import projects  # noqa: F401
from emulator.services import datasets  # noqa: F401
from emulator.services import tags  # noqa: F401
from emulator.services import model_lifecycle  # noqa: F401
from emulator.services import detection  # noqa: F401
from emulator.services import packaging  # noqa: F401
