"""The ASGI application uvicorn serves in docs/servers.md's recipe: "ok"
and, in X-Pid, the pid of the process that answered."""
import os


async def app(scope, receive, send):
    assert scope["type"] == "http"
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/plain"), (b"x-pid", str(os.getpid()).encode())],
    })
    await send({"type": "http.response.body", "body": b"ok\n"})
