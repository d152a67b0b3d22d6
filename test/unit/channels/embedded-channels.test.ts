import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { pino } from 'pino';
import { EmbeddedChannelReader, EmbeddedChannelWriter } from '../../../src/channels/index.ts';
import type { EmbeddedTransport } from '../../../src/transport/embedded/embedded.ts';
import { openEmbeddedTransport } from '../../../src/transport/embedded/index.ts';
import { runChannelSuite } from '../../channels/suite.ts';

let transport: EmbeddedTransport;
const dir = mkdtempSync(join(tmpdir(), 'sluice-channels-'));
const logger = pino({ level: 'silent' });
before(async () => {
  transport = await openEmbeddedTransport({ path: join(dir, 'broker.db') });
});
after(async () => {
  await transport.close();
  rmSync(dir, { recursive: true, force: true });
});

runChannelSuite('embedded', {
  reader: (o) => new EmbeddedChannelReader({ ...o, transport, logger }),
  writer: (o) => new EmbeddedChannelWriter({ ...o, transport, logger }),
  positionalOffsets: true,
  roundRobin: true,
});
