# gunicorn configuration for example-web.service: copy it beside the
# application (WorkingDirectory=, /srv/example-web/gunicorn.conf.py).
#
# It closes a race in gunicorn 20.1's own stop. A worker starts with the
# master's signal handlers (os.fork in Arbiter.spawn_worker) and installs
# its own only in Worker.init_signals. A SIGTERM that reaches it between the
# two, as it does when `systemctl restart` comes while a worker boots, runs
# the master's handler in the worker: it is queued in the worker's copy of
# the master's signal queue, which nobody reads, and is lost. The worker
# then serves as if nothing happened until the master's SIGKILL after
# --graceful-timeout (or systemd's, after TimeoutStopSec=), and the request
# it is serving at that moment is closed without a reply.
#
# The hooks below hold the stop signals in the kernel from the moment the
# worker can run its own code until its handlers are installed, and take
# as a stop order any stop signal the master's handler caught before that.
import signal

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}


def post_fork(server, worker):
    # pthread_sigmask(2): a blocked signal stays pending, not lost.
    # signal.pthread_sigmask runs Python handlers already due before it
    # returns, so SIG_QUEUE below holds everything that came before.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    if STOP_SIGNALS.intersection(server.SIG_QUEUE):
        # Worker.run's loop runs while alive: the worker exits, having
        # accepted nothing.
        worker.alive = False


def post_worker_init(worker):
    # Worker.init_signals has run: a pending SIGTERM now reaches
    # Worker.handle_exit, which ends the worker after its current request.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
