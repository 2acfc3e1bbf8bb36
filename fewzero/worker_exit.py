"""How a worker process ends: with its launcher (``exit_with_launcher``), and after its work without the
interpreter's teardown once it joined a torchrun group (``exit_process``). No fewzero imports: the command line and
``fewzero.distributed`` both use it."""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
import time
from typing import NoReturn

LAUNCH_DIR_ENV = "FEWZERO_LAUNCH_DIR"  # the launcher's temporary folder; removed by a worker that outlives it
_joined = False  # whether this process joined a group of its own (fewzero.distributed.process_group)


def joined_a_group() -> None:
    """Recorded by ``fewzero.distributed.process_group`` once this process joined its group."""
    global _joined
    _joined = True


def exit_process(code: int | None = 0) -> NoReturn:
    """End the process with ``code`` (None: 0). A process that joined a torchrun group in ``process_group`` ends at
    once, its output flushed, without the interpreter's teardown.

    Why: ``destroy_process_group`` does not always free the gloo group (other objects keep references), so its C++
    threads can meet the interpreter's finalization and abort a worker whose work is done and saved
    ("terminate called without an active exception", exit -6: 2 runs of the suite in about 10, in two different
    torchrun tests); torchrun then reports the whole run as failed. Every file is closed by then (with-blocks).
    """
    code = 0 if code is None else code
    if _joined:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
    sys.exit(code)


def exit_with_launcher(poll_s: float = 0.5) -> None:
    """End this process at once when the process that launched it dies (even by SIGKILL), so that no orphan keeps
    training and writing into the run folder; it also removes the launcher's temporary folder."""
    parent = os.getppid()  # polled, not PR_SET_PDEATHSIG: that fires when the parent's *thread* ends

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        folder = os.environ.get(LAUNCH_DIR_ENV)
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
        os._exit(1)

    threading.Thread(target=watch, name="fewzero-launcher-watch", daemon=True).start()
