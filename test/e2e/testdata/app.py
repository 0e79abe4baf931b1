"""The smallest WSGI application: the end-to-end tests serve it through
gunicorn and count how many of its replies reach wrk across restarts."""


def app(environ, start_response):
    body = b"ok\n"
    start_response("200 OK", [
        ("Content-Type", "text/plain"),
        ("Content-Length", str(len(body))),
    ])
    return [body]
