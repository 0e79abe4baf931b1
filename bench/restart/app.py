"""The WSGI application of the restart benchmark (bench/restart/run): the
smallest reply, so that the figures are the server's restarts, not its work."""


def app(environ, start_response):
    body = b"ok\n"
    start_response("200 OK", [
        ("Content-Type", "text/plain"),
        ("Content-Length", str(len(body))),
    ])
    return [body]
