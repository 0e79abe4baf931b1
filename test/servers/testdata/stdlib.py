"""A Python standard-library HTTP server on the socket "fdclient exec
--vars names web=..." passes: socket.socket(fileno=N) adopts it without
binding. Run alone with HOST:PORT, it binds the port itself (the baseline).
SIGTERM stops it gracefully: no new connection is accepted, the requests in
hand finish (server_close joins their threads), then it exits.

SIGTERM is blocked and taken with sigwait by the main thread, never by a
signal.signal handler. Python runs such a handler in the main thread between
two bytecodes, wherever that thread is, even inside a lock threading holds:
serve_forever's thread holds threading's _shutdown_locks_lock while it reaps
a finished request thread (ThreadingMixIn.process_request, Thread.is_alive),
and a handler that starts a thread (to call shutdown, which must not run in
serve_forever's thread) then waits in Thread.start for a thread that waits
for that lock (Thread._set_tstate_lock): the server hung for good, silent."""
import http.server
import os
import signal
import socket
import sys
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so no idle keep-alive
    # connection can hold up the graceful stop.
    protocol_version = "HTTP/1.0"
    # A connection whose request does not come within 5 s is closed
    # (StreamRequestHandler sets it as the socket's timeout), so that a
    # silent client cannot hold up server_close, which joins every thread.
    timeout = 5

    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Pid", str(os.getpid()))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close waits for the requests in hand
    request_queue_size = 1024


def main():
    # Blocked before any thread starts: every thread inherits the mask
    # (pthread_sigmask(3)), so a SIGTERM stays pending until sigwait takes
    # it, however early it comes.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    if "FDHOLDER_FD_WEB" in os.environ:
        sock = socket.socket(fileno=int(os.environ["FDHOLDER_FD_WEB"]))
        server = Server(sock.getsockname(), Handler, bind_and_activate=False)
        server.socket.close()  # the unbound socket the constructor made
        server.socket = sock
    else:
        host, port = sys.argv[1].rsplit(":", 1)
        server = Server((host, int(port)), Handler)
    serving = threading.Thread(target=server.serve_forever)
    serving.start()
    signal.sigwait({signal.SIGTERM})
    server.shutdown()  # serve_forever returns: no new connection accepted
    serving.join()
    server.server_close()  # closes the socket, joins the request threads


main()
