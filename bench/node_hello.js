// node_hello.js — the Node peer for bench/server.sh: Node's http.createServer
// answering every request with 200 "hello, world" (text/plain), like
// `ferry serve`. Usage: node bench/node_hello.js PORT
//
// Prints `listening on http://127.0.0.1:PORT` once it accepts. On SIGTERM it
// calls server.close(), which since Node 19 also closes idle keep-alive
// connections, prints `close_ms X` (close() to its callback) and exits 0.
// keepAliveTimeout is 300 s so that no idle connection times out by itself
// during the memory and close measurements (the same as the baselines).
'use strict';
const http = require('http');

const port = Number(process.argv[2]);
const body = 'hello, world';
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 300000;
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening on http://127.0.0.1:${port}\n`);
});
process.on('SIGTERM', () => {
  const t0 = process.hrtime.bigint();
  server.close(() => {
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    process.stdout.write(`close_ms ${ms.toFixed(2)}\n`, () => process.exit(0));
  });
});
