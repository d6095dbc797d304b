"""The ``experiment`` console script: the CLI, with Python's cyclic garbage collector held off at start-up.

Start-up (imports, param files, fingerprints, the DAG) allocates some 100,000 objects that live
as long as the process, and no cyclic garbage, yet they trigger dozens of collections that
each scan them: about 5% of a fully cached run. The collector comes back on, with those
objects frozen out of its view (:func:`gc.freeze`), before any stage runs, and at once for
commands that run no stages (``commands.resume_gc``).
"""

import gc

gc.disable()

from .cli import main  # noqa: E402  (after gc.disable: the imports are the point)

__all__ = ["main"]
