// The Node.js server of docs/servers.md's recipe: it serves the socket
// "fdclient exec --vars names web=..." passes (listen({fd})), or, given
// HOST:PORT, binds the port itself (the baseline). SIGTERM stops it
// gracefully without the read errors the default server.close() causes:
// the listener closes, every request from then on is answered with
// "Connection: close", and the process exits when the last connection has.
"use strict";
const http = require("http");
const net = require("net");

let draining = false;
const server = http.createServer((req, res) => {
  if (draining) res.setHeader("Connection", "close");
  res.setHeader("X-Pid", String(process.pid));
  res.end("ok\n");
});

if (process.env.FDHOLDER_FD_WEB !== undefined) {
  server.listen({ fd: Number(process.env.FDHOLDER_FD_WEB) });
} else {
  const [host, port] = process.argv[2].split(/:(?=[^:]*$)/);
  server.listen({ host, port: Number(port) });
}

process.on("SIGTERM", () => {
  draining = true;
  // net.Server's close stops accepting; http.Server's own close (Node 19
  // and later) would also close the idle keep-alive connections at once,
  // racing with requests their clients are sending.
  net.Server.prototype.close.call(server);
  // Idle connections get keepAliveTimeout (5 s) to send a last request.
});
