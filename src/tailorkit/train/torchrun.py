"""`python -m tailorkit.train.torchrun ARGS`: torch.distributed.run as `tailor train --nproc N`
starts it (train/distributed.py `launch`). It ignores Ctrl-C: the workers got it from the
terminal and stop by themselves, and torchrun's own handler would signal them a second time.
A stop ends with status 130 instead of torchrun's traceback; a worker that failed otherwise
still shows torchrun's report."""

from __future__ import annotations

import signal
import sys

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run


def main() -> None:
    signal.signal(signal.SIGINT, lambda *_: None)  # a handler, not SIG_IGN: the workers keep the default
    try:
        run(parse_args(sys.argv[1:]))
    except SignalException:  # SIGTERM, passed on by `launch`: the workers were stopped the same way
        sys.exit(130)
    except ChildFailedError as err:
        if {failure.exitcode for failure in err.failures.values()} == {130}:  # all stopped cleanly
            sys.exit(130)
        raise


if __name__ == "__main__":
    main()
