"""Mining loops (runners/) and hooks (hooks/); importing registers them."""
from . import hooks  # noqa: F401
from . import runners  # noqa: F401
