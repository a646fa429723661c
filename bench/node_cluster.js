// node_cluster.js — the Node peer for bench/restart.sh and bench/haproxy_rolling.sh:
// a cluster primary and WORKERS workers (default 2), each answering every request
// with 200 "hello, world" (text/plain), like `ferry serve`, and a rolling restart of
// the workers done the usual pm2-style way.
//
// Usage: node bench/node_cluster.js PORT [WORKERS]
//   env KEEP_ALIVE_MS  the workers' server.keepAliveTimeout [5000, Node's default]
//       KILL_TIMEOUT_MS  how long a disconnecting worker may take before SIGKILL
//                        [1600, pm2's kill_timeout default]
// Every path (a health check's /healthz too) gets the same 200; /cpu?ms=N first
// spins N ms on the worker's event loop (bench/cores.sh).
//
// Prints `listening on http://127.0.0.1:PORT` once every worker accepts. SIGUSR2 to
// the primary restarts the workers one at a time: fork a new worker, wait until it
// listens, then worker.disconnect() on the old one (its server closes, Node 19+
// also closes its idle keep-alive connections) and SIGKILL it if it has not exited
// after KILL_TIMEOUT_MS. When every worker has been replaced it prints
// `restarted N` (N counts the rolling restarts so far). A SIGUSR2 during a restart
// is queued. SIGTERM to the primary disconnects every worker and exits 0.
// Connections are spread by the primary (cluster.SCHED_RR, Linux's default).
'use strict';
const cluster = require('cluster');
const http = require('http');

const port = Number(process.argv[2]);
const nworkers = Number(process.argv[3] || 2);
const keepAliveMs = Number(process.env.KEEP_ALIVE_MS || 5000);
const killTimeoutMs = Number(process.env.KILL_TIMEOUT_MS || 1600);

if (cluster.isPrimary) {
  let restarts = 0;
  let pending = 0; // SIGUSR2s not yet served
  let restarting = false;

  const fork = () =>
    new Promise((resolve) => {
      const w = cluster.fork();
      w.once('listening', () => resolve(w));
    });

  // Disconnect, then SIGKILL after the timeout; resolves when the worker is gone.
  const retire = (w) =>
    new Promise((resolve) => {
      const timer = setTimeout(() => w.process.kill('SIGKILL'), killTimeoutMs);
      w.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      w.disconnect();
    });

  const rolling = async () => {
    restarting = true;
    while (pending > 0) {
      pending--;
      for (const old of Object.values(cluster.workers)) {
        if (!old || old.retiring) continue;
        await fork();
        old.retiring = true;
        await retire(old);
      }
      restarts++;
      process.stdout.write(`restarted ${restarts}\n`);
    }
    restarting = false;
  };

  process.on('SIGUSR2', () => {
    pending++;
    if (!restarting) rolling();
  });
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers)) if (w) w.disconnect();
    setTimeout(() => process.exit(0), killTimeoutMs).unref();
    cluster.on('exit', () => {
      if (Object.keys(cluster.workers).length === 0) process.exit(0);
    });
  });

  Promise.all(Array.from({ length: nworkers }, fork)).then(() => {
    process.stdout.write(`listening on http://127.0.0.1:${port}\n`);
  });
} else {
  const body = 'hello, world';
  const server = http.createServer((req, res) => {
    // /cpu?ms=N: N ms of CPU in the handler, as a Node handler does it (on
    // the event loop: the worker serves nobody else meanwhile); bench/cores.sh
    const cpu = /^\/cpu\?ms=(\d+)/.exec(req.url);
    if (cpu) {
      const until = process.hrtime.bigint() + BigInt(cpu[1]) * 1000000n;
      while (process.hrtime.bigint() < until);
    }
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
    res.end(body);
  });
  server.keepAliveTimeout = keepAliveMs;
  server.listen(port, '127.0.0.1');
}
