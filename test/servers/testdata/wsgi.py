"""The WSGI application gunicorn and uWSGI serve in docs/servers.md's
recipes: "ok" and, in X-Pid, the pid of the process that answered, so that
the tests can tell which generation serves."""
import os


def application(environ, start_response):
    body = b"ok\n"
    start_response("200 OK", [
        ("Content-Type", "text/plain"),
        ("Content-Length", str(len(body))),
        ("X-Pid", str(os.getpid())),
    ])
    return [body]
