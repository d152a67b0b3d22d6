import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { isSluiceError } from '../../../../src/errors.ts';
import { openRabbitMqTransport } from '../../../../src/transport/rabbitmq/index.ts';

/** A port on 127.0.0.1 that nothing listens on (bound, read, closed). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function assertUnreachable(err: unknown, address: string): true {
  assert.ok(
    isSluiceError(err, 'SLUICE_BROKER_UNREACHABLE'),
    `expected SLUICE_BROKER_UNREACHABLE, got ${String(err)}`,
  );
  const message = (err as Error).message;
  assert.ok(message.includes(address), `the message names the address: ${message}`);
  assert.ok(!message.includes('s3cret'), 'the message hides the password');
  assert.ok(/Check that the broker runs/.test(message), `the message says how to fix it: ${message}`);
  return true;
}

describe('unreachable RabbitMQ broker', () => {
  it(
    'a closed port fails with SLUICE_BROKER_UNREACHABLE once the connect bound is spent',
    { timeout: 30_000 },
    async () => {
      const address = `127.0.0.1:${await closedPort()}`;
      await assert.rejects(
        openRabbitMqTransport({ url: `amqp://guest:s3cret@${address}`, connectTimeoutMs: 1000 }),
        (e) => assertUnreachable(e, address),
      );
    },
  );

  it(
    'a port that accepts but never answers fails within the bound, not a hang',
    { timeout: 30_000 },
    async () => {
      const sockets = new Set<net.Socket>();
      const server = net.createServer((s) => {
        sockets.add(s);
        s.on('error', () => undefined);
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const address = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
      try {
        await assert.rejects(
          openRabbitMqTransport({ url: `amqp://guest:s3cret@${address}`, connectTimeoutMs: 1000 }),
          (e) => assertUnreachable(e, address),
        );
      } finally {
        for (const s of sockets) s.destroy();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    },
  );
});
