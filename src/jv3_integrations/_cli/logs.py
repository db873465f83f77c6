"""How ``jv3`` shows log records: one line each by default, everything with ``JV3_DEBUG=1``."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_HUB_VERBOSITY = "HF_HUB_VERBOSITY"


class _OneLineHandler(logging.Handler):
    """Library log records on stderr as single ``jv3: level: message`` lines, no tracebacks."""

    def emit(self, record: logging.LogRecord) -> None:
        message = " ".join(record.getMessage().split())
        print(f"jv3: {record.levelname.lower()}: {message}", file=sys.stderr)


def _own_records(record: logging.LogRecord) -> bool:
    return record.name == "jv3_integrations" or record.name.startswith("jv3_integrations.")


def quiet_native_logs() -> None:
    """gRPC's C core writes to stderr itself (``too_many_pings`` ...): silence it by default.

    Must run before grpc is imported (the store clients import it lazily, after this).
    """
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")


@contextmanager
def command_logging(debug: bool) -> Iterator[None]:
    """The command is an application: it (not the library) decides how logs are shown.

    Installed for one ``main()`` call and removed afterwards, so in-process callers (tests)
    keep their own logging.
    """
    root = logging.getLogger()
    milvus_lite = logging.getLogger("milvus_lite")
    # huggingface_hub hangs a stderr handler of its own on this logger when the local model
    # imports it, so its "Retrying in 1s" would reach the terminal past our handler's filter.
    hub = logging.getLogger("huggingface_hub")
    old_root_level, old_milvus_level, old_hub_level = root.level, milvus_lite.level, hub.level
    old_hub_env = os.environ.get(_HUB_VERBOSITY)
    handler: logging.Handler
    if debug:  # everything, with tracebacks
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.setLevel(logging.DEBUG)
    else:
        handler = _OneLineHandler(logging.WARNING)
        # Only our own warnings: gRPC's "Exception calling application: Method not
        # implemented!" (Milvus Lite), the Hub's retry chatter etc. are not failures of the
        # command; real failures reach the user as exceptions, in one line.
        handler.addFilter(_own_records)
        # Milvus Lite logs a traceback when a store is locked; the command says it in one line.
        milvus_lite.setLevel(logging.CRITICAL)
        hub.setLevel(logging.ERROR)
        os.environ.setdefault(_HUB_VERBOSITY, "error")  # the level the Hub sets on import
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_root_level)
        milvus_lite.setLevel(old_milvus_level)
        hub.setLevel(old_hub_level)
        if old_hub_env is None:
            os.environ.pop(_HUB_VERBOSITY, None)
