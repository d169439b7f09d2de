/**
 * The HTTP reference: a plain Node.js `http` server answering every request with a fixed 100-byte body.
 *   node dist/bench/baselines/plain-http.js --port 8082
 */
import { createServer } from 'node:http';

const i = process.argv.indexOf('--port');
const port = i >= 0 ? Number(process.argv[i + 1]) : 8082;
const body = Buffer.alloc(100, 0x61);

const server = createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () => console.log(`plain http listening on 127.0.0.1:${port}`));
process.on('SIGTERM', () => process.exit(0));
