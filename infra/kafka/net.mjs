// Small dependency-free network helpers for scripts/kafka.sh (plain ESM, runs on any Node >= 18).
//
//   node net.mjs free-ports N        prints N distinct free TCP ports on 127.0.0.1, one per line
//   node net.mjs probe HOST:PORT [MS] one Kafka ApiVersions v0 round trip; exit 0 when the broker answers with
//                                    error_code 0, 1 otherwise (reason on stderr). MS bounds the attempt (2000).
//
// Free ports come from binding 127.0.0.1:0 and reading the port the kernel picked. All sockets are held open until
// every port is known, so the N ports differ; they are closed before printing, so there is a small window in which
// another process could take one (the broker then fails with "Address already in use" and start reports it).
import net from 'node:net';
import { freePorts } from '../free-ports.mjs';

// ApiVersions v0 request: int32 size | int16 api_key=18 | int16 api_version=0 | int32 correlation_id
// | int16 client_id length + bytes. Response: int32 size | int32 correlation_id | int16 error_code | ...
function probe(address, timeoutMs) {
  const idx = address.lastIndexOf(':');
  const host = address.slice(0, idx);
  const port = Number(address.slice(idx + 1));
  const correlationId = 0x51c3;
  const clientId = Buffer.from('sluice-probe', 'utf8');
  const body = Buffer.alloc(2 + 2 + 4 + 2 + clientId.length);
  body.writeInt16BE(18, 0);
  body.writeInt16BE(0, 2);
  body.writeInt32BE(correlationId, 4);
  body.writeInt16BE(clientId.length, 8);
  clientId.copy(body, 10);
  const size = Buffer.alloc(4);
  size.writeInt32BE(body.length, 0);

  return new Promise((resolve) => {
    let done = false;
    let received = Buffer.alloc(0);
    const socket = net.connect({ host, port });
    const finish = (ok, reason) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ ok, reason });
    };
    const timer = setTimeout(() => finish(false, `no answer within ${timeoutMs} ms`), timeoutMs);
    socket.on('error', (err) => finish(false, err.message));
    socket.on('connect', () => socket.write(Buffer.concat([size, body])));
    socket.on('data', (chunk) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < 10) return;
      const gotCorrelation = received.readInt32BE(4);
      const errorCode = received.readInt16BE(8);
      if (gotCorrelation !== correlationId) finish(false, `correlation id ${gotCorrelation}: not a Kafka broker?`);
      else if (errorCode !== 0) finish(false, `ApiVersions error_code ${errorCode}`);
      else finish(true, 'ok');
    });
    socket.on('close', () => finish(false, 'connection closed before a complete answer'));
  });
}

const [cmd, arg, arg2] = process.argv.slice(2);
if (cmd === 'free-ports') {
  const ports = await freePorts(Number(arg ?? '1'));
  process.stdout.write(`${ports.join('\n')}\n`);
} else if (cmd === 'probe' && arg) {
  const { ok, reason } = await probe(arg, Number(arg2 ?? '2000'));
  if (!ok) {
    process.stderr.write(`probe ${arg}: ${reason}\n`);
    process.exitCode = 1;
  }
} else {
  process.stderr.write('usage: net.mjs free-ports N | probe HOST:PORT [TIMEOUT_MS]\n');
  process.exitCode = 2;
}
