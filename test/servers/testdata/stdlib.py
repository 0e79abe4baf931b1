"""A Python standard-library HTTP server on the socket "fdclient exec
--vars names web=..." passes: socket.socket(fileno=N) adopts it without
binding. Run alone with HOST:PORT, it binds the port itself (the baseline).
SIGTERM stops it gracefully: no new connection is accepted, the requests in
hand finish (server_close joins their threads), then it exits."""
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
    if "FDHOLDER_FD_WEB" in os.environ:
        sock = socket.socket(fileno=int(os.environ["FDHOLDER_FD_WEB"]))
        server = Server(sock.getsockname(), Handler, bind_and_activate=False)
        server.socket.close()  # the unbound socket the constructor made
        server.socket = sock
    else:
        host, port = sys.argv[1].rsplit(":", 1)
        server = Server((host, int(port)), Handler)
    signal.signal(signal.SIGTERM,
                  lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    server.server_close()


main()
