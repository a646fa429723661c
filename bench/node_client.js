// bench/node_client.js — the Node 20 clients of bench/client.sh: N GETs of one
// URL with CONC in flight, as a whole process (start-up included, as a user
// would run it).
//
//   node bench/node_client.js http   URL N CONC   http.Agent({keepAlive: true, maxSockets: CONC})
//   node bench/node_client.js https  URL N CONC   https.Agent({keepAlive: true, maxSockets: CONC})
//   node bench/node_client.js undici URL N CONC   undici Pool({connections: CONC}), pool.request()
//
// https verifies as Node does by default: a private CA comes through
// NODE_EXTRA_CA_CERTS (bench/tls.sh sets it).
//
// undici comes from npm (bench/client.sh installs it under build-bench/npm and
// sets NODE_PATH). Bodies are read and dropped. Exit status 1 if any request
// failed or answered outside 2xx, with one line on stderr.
'use strict';

const [mode, url, nArg, concArg] = process.argv.slice(2);
const n = Number(nArg);
const conc = Number(concArg);
if (!['http', 'https', 'undici'].includes(mode) || !url || !(n > 0) || !(conc > 0)) {
  process.stderr.write('usage: node node_client.js http|https|undici URL N CONC\n');
  process.exit(2);
}

let started = 0;
let finished = 0;
let failed = 0;

function done(ok) {
  finished++;
  if (!ok) failed++;
  if (finished === n) {
    if (failed) {
      process.stderr.write(`node_client: ${failed} of ${n} requests failed\n`);
      process.exitCode = 1;
    }
    close();
    return;
  }
  if (started < n) one();
}

let one;
let close = () => {};

if (mode === 'http' || mode === 'https') {
  const http = require(mode);
  const agent = new http.Agent({ keepAlive: true, maxSockets: conc });
  one = () => {
    started++;
    http
      .get(url, { agent }, (res) => {
        res.resume();
        res.on('end', () => done(res.statusCode >= 200 && res.statusCode < 300));
        res.on('error', () => done(false));
      })
      .on('error', () => done(false));
  };
  close = () => agent.destroy();
} else {
  const { Pool } = require('undici');
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections: conc });
  const path = u.pathname + u.search;
  one = () => {
    started++;
    pool
      .request({ path, method: 'GET' })
      .then(async ({ statusCode, body }) => {
        await body.dump();
        done(statusCode >= 200 && statusCode < 300);
      })
      .catch(() => done(false));
  };
  close = () => pool.close();
}

for (let i = 0; i < Math.min(conc, n); i++) one();
