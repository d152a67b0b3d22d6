import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { openEmbeddedTransport } from '../../../src/transport/embedded/index.ts';
import { runConformance } from '../../conformance/suite.ts';

const dir = mkdtempSync(join(tmpdir(), 'sluice-conf-'));
after(() => rmSync(dir, { recursive: true, force: true }));

// every transport of one run opens the same broker file, as separate processes would
runConformance('embedded', () => openEmbeddedTransport({ path: join(dir, 'broker.db') }), {
  sessionTimeoutMs: 1500,
});

// the same contract with every value in segment files (by default only values of 16 KiB and more go there)
runConformance(
  'embedded, values in segment files',
  () => openEmbeddedTransport({ path: join(dir, 'segments.db'), segmentThresholdBytes: 0 }),
  { sessionTimeoutMs: 1500 },
);
