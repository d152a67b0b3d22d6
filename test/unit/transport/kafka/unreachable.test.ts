import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { isSluiceError } from '../../../../src/errors.ts';
import { openKafkaTransport } from '../../../../src/transport/kafka/index.ts';

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
  assert.ok(/Check that the broker runs/.test(message), `the message says how to fix it: ${message}`);
  return true;
}

describe('unreachable Kafka broker', () => {
  it('a closed port fails with SLUICE_BROKER_UNREACHABLE', { timeout: 30_000 }, async () => {
    const address = `127.0.0.1:${await closedPort()}`;
    await assert.rejects(openKafkaTransport({ bootstrapServers: address, connectTimeoutMs: 5000 }), (e) =>
      assertUnreachable(e, address),
    );
  });

  it(
    'a port that accepts but never answers fails within the bound, not a hang',
    { timeout: 30_000 },
    async () => {
      const sockets = new Set<net.Socket>();
      const server = net.createServer((s) => {
        sockets.add(s); // swallow every request
        s.on('error', () => undefined);
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const address = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
      try {
        await assert.rejects(openKafkaTransport({ bootstrapServers: address, connectTimeoutMs: 1500 }), (e) =>
          assertUnreachable(e, address),
        );
      } finally {
        for (const s of sockets) s.destroy();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    },
  );
});
