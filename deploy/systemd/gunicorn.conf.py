# gunicorn configuration for example-web.service: copy it beside the
# application (WorkingDirectory=, /srv/example-web/gunicorn.conf.py).
#
# It closes a race in gunicorn 20.1's own stop. A worker starts with the
# master's signal handlers (os.fork in Arbiter.spawn_worker) and installs
# its own only in Worker.init_signals. A SIGTERM that reaches it in between,
# as when `systemctl restart` comes while a worker boots, is lost: either
# CPython drops it (it clears signals caught but not yet handled right
# after fork, PyOS_AfterFork_Child, bpo-9535) or the master's handler
# queues it in the worker's copy of the master's queue, which nobody reads.
# That worker never hears of the stop: it serves until the master's
# SIGKILL at --graceful-timeout (or systemd's at TimeoutStopSec=), and the
# request in hand then is closed without a reply.
#
# So the stop signals are blocked (pthread_sigmask(2): a blocked signal
# stays pending in the kernel, it is not lost) from just before fork until
# the worker's own handlers are installed; the master unblocks them right
# after fork, and the master's stop signals every worker it forked.
import os
import signal

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}


def _block():
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def _unblock():
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


# In the master: blocked across os.fork, unblocked at once in the master;
# the worker inherits the blocked mask (fork(2) keeps it).
os.register_at_fork(before=_block, after_in_parent=_unblock)


def post_worker_init(worker):
    # Worker.init_signals has run: a pending SIGTERM now reaches
    # Worker.handle_exit, and the worker ends before it accepts anything.
    _unblock()
