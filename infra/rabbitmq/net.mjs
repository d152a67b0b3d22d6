// Small dependency-free network helpers for scripts/rabbitmq.sh (plain ESM, runs on any Node >= 18).
//
//   node net.mjs free-ports N         prints N distinct free TCP ports on 127.0.0.1, one per line
//   node net.mjs probe HOST:PORT [MS] one AMQP 0-9-1 protocol header → Connection.Start round trip; exit 0 when
//                                     the server answers with a Connection.Start frame, 1 otherwise (reason on
//                                     stderr). MS bounds the attempt (default 2000).
//
// Free ports come from binding 127.0.0.1:0 and reading the port the kernel picked. All sockets are held open until
// every port is known, so the N ports differ; they are closed before printing, so there is a small window in which
// another process could take one (the node then fails with "eaddrinuse" and start reports it).
import net from 'node:net';
import { freePorts } from '../free-ports.mjs';

// The client opens with the protocol header "AMQP" 0 0 9 1. A RabbitMQ node answers with a method frame:
// type 1 | channel u16 0 | size u32 | class u16 10 (connection) | method u16 10 (start) | ... | frame end 0xCE.
function probe(address, timeoutMs) {
  const idx = address.lastIndexOf(':');
  const host = address.slice(0, idx);
  const port = Number(address.slice(idx + 1));
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
    socket.on('connect', () => socket.write(Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1])));
    socket.on('data', (chunk) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < 11) return;
      const type = received.readUInt8(0);
      const classId = received.readUInt16BE(7);
      const methodId = received.readUInt16BE(9);
      if (type === 1 && classId === 10 && methodId === 10) finish(true, 'ok');
      else finish(false, `unexpected first frame (type ${type}, class ${classId}, method ${methodId}): not AMQP 0-9-1?`);
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
