"""Ctrl+C once `attnlab` has started: a KeyboardInterrupt, and a record that the key was pressed.

Some code swallows a KeyboardInterrupt it did not ask for: Python drops one raised in a weakref callback
or a __del__ (it calls sys.unraisablehook), and numpy.random's compiled modules cleared one raised while
they initialised (CI caught it, inside abc.register during numpy.random._generator's import). Either way
the command carried on as if the key had never been pressed. A dropped one is delivered again a moment
later; a cleared one leaves `pending` set, which training reads when its own handler goes in.
"""

import os
import signal
import sys
import threading
import time

_pending = False  # a Ctrl+C raised as KeyboardInterrupt that nothing has yet acted on, as far as we know


def _raise(signum, frame):
    global _pending
    _pending = True
    raise KeyboardInterrupt


def take_over():
    """Start-up is over: Ctrl+C raises KeyboardInterrupt again (commands clean up, training saves `last`)."""
    signal.signal(signal.SIGINT, _raise)
    previous = sys.unraisablehook

    def redeliver_dropped_ctrl_c(unraisable):
        global _pending
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            return previous(unraisable)
        _pending = False  # it comes back as a new Ctrl+C, to whatever handler is then in place
        threading.Thread(target=_send_ctrl_c, daemon=True).start()
    sys.unraisablehook = redeliver_dropped_ctrl_c


def _send_ctrl_c():
    time.sleep(0.01)  # the main thread leaves the code that dropped it
    os.kill(os.getpid(), signal.SIGINT)


def take_pending() -> bool:
    """True once for a Ctrl+C since start-up that raised KeyboardInterrupt where something cleared it.

    Call it where a KeyboardInterrupt could not have passed (training's handler going in): had it
    propagated, the command would have ended already."""
    global _pending
    was, _pending = _pending, False
    return was
