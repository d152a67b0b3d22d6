/**
 * sluice channels ↔ real pypz channels (pypz-kafka-io / pypz-rmq-io 0.10.2 in the venv from scripts/pypz-venv.sh,
 * driven by test/integration/python/pypz_peer.py). Both directions on the broker the caller provides:
 * - a pypz writer → a sluice reader: every record, the writer's Started/Stopped/Closed seen, the reader ends;
 * - a sluice writer → a pypz reader: the same, judged by pypz's own monitors, and the pypz reader ends.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type {
  ChannelOptions,
  ChannelReader,
  ChannelWriter,
  ReaderOptions,
} from '../../src/channels/index.ts';
import { finishReader, finishWriter, readToEnd, startReader, startWriter } from '../../src/channels/index.ts';
import { closingAfterEach } from '../channels/suite.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PEER = path.join(ROOT, 'test/integration/python/pypz_peer.py');
const PYTHON = path.join(
  process.env.SLUICE_PYPZ_VENV ?? path.join(ROOT, '.infra/pypz-venv'),
  'bin',
  'python',
);

export const PEER_SCHEMA = JSON.stringify({
  type: 'record',
  name: 'PeerRecord',
  fields: [
    { name: 'id', type: 'int' },
    { name: 'text', type: 'string' },
  ],
});

interface PeerEvent {
  event: string;
  [k: string]: unknown;
}

export interface PeerRun {
  events: PeerEvent[];
  code: number | null;
  stderr: string;
}

/** Starts the pypz peer; resolves when it exits. Fails (never skips) when the venv is missing. */
export function runPeer(args: string[], onEvent?: (e: PeerEvent) => void): Promise<PeerRun> {
  assert.ok(
    existsSync(PYTHON),
    `pypz venv not found at ${PYTHON}: create it with "bash scripts/pypz-venv.sh" (npm run test:integration does).`,
  );
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [PEER, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const events: PeerEvent[] = [];
    let stderr = '';
    let buf = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line === '') continue;
        const e = JSON.parse(line) as PeerEvent;
        events.push(e);
        onEvent?.(e);
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      stderr = (stderr + d).slice(-20_000);
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ events, code, stderr }));
  });
}

function ok(run: PeerRun, what: string): void {
  assert.equal(
    run.code,
    0,
    `${what} failed (exit ${run.code}): ${JSON.stringify(run.events.filter((e) => e.event === 'error'))}\n${run.stderr.slice(-4000)}`,
  );
}

export interface InteropTarget {
  broker: 'kafka' | 'rmq';
  /** `--bootstrap X` or `--url X` */
  peerLocation: string[];
  reader<T>(o: ReaderOptions): ChannelReader<T> | Promise<ChannelReader<T>>;
  writer<T>(o: ChannelOptions): ChannelWriter<T> | Promise<ChannelWriter<T>>;
}

export function runPypzInterop(name: string, given: InteropTarget): void {
  const target = closingAfterEach(given);
  describe(`pypz interop: ${name}`, { timeout: 300_000 }, () => {
    it('a pypz writer → a sluice reader: all records, the writer Started/Stopped/Closed seen, the reader ends', async () => {
      const ch = `interop.in-${randomUUID().slice(0, 8)}.input_port`;
      const reader = await target.reader<{ id: number; text: string }>({
        channelName: ch,
        contextName: ch,
        format: { avroSchema: PEER_SCHEMA },
      });
      const statuses: string[] = [];
      reader.onStatusMessage((m) => {
        if (m.channelContextName === 'op_a.output_port' && m.status !== 'HealthCheck')
          statuses.push(m.status);
      });
      const started = startReader(reader, { writerWaitTimeoutMs: 120_000 });
      const peer = runPeer([
        '--broker',
        target.broker,
        ...target.peerLocation,
        '--role',
        'writer',
        '--channel-name',
        ch,
        '--context-name',
        'op_a.output_port',
        '--count',
        '40',
        '--batch-size',
        '8',
        '--linger-ms',
        '3000',
        '--timeout-s',
        '150',
      ]);
      await started;
      const got: Array<{ id: number; text: string }> = [];
      await readToEnd(reader, (r) => {
        got.push(...r);
      });
      const run = await peer;
      ok(run, 'the pypz writer');
      assert.deepEqual(
        got,
        Array.from({ length: 40 }, (_, i) => ({ id: i, text: `record-${i}` })),
        'every record of the pypz writer, in order',
      );
      assert.deepEqual(
        statuses.filter((s) => s !== 'Opened'),
        ['Started', 'Stopped', 'Closed'],
        `the sluice reader saw the pypz writer's transitions (got ${statuses.join(', ')})`,
      );
      const seenByPeer = run.events
        .filter((e) => e.event === 'status' && e.from === `${ch}@${ch}`)
        .map((e) => e.status);
      assert.ok(
        seenByPeer.includes('Started'),
        `the pypz writer saw the sluice reader start (${seenByPeer.join(', ')})`,
      );
      await finishReader(reader);
    });

    it('a sluice writer → a pypz reader: all records, pypz sees Started/Stopped/Closed and ends', async () => {
      const ch = `interop.out-${randomUUID().slice(0, 8)}.input_port`;
      const peer = runPeer([
        '--broker',
        target.broker,
        ...target.peerLocation,
        '--role',
        'reader',
        '--channel-name',
        ch,
        '--context-name',
        ch,
        '--acknowledge',
        '--timeout-s',
        '150',
      ]);
      const writer = await target.writer<{ id: number; text: string }>({
        channelName: ch,
        contextName: 'sluice.output_port',
        format: { avroSchema: PEER_SCHEMA },
      });
      await startWriter(writer, { portOpenTimeoutMs: 120_000 });
      const sent = Array.from({ length: 40 }, (_, i) => ({ id: i, text: `sluice-${i} ✓` }));
      for (let i = 0; i < 40; i += 10) await writer.invokeWriteRecords(sent.slice(i, i + 10));
      const readerStatuses: string[] = [];
      writer.onStatusMessage((m) => {
        if (m.status !== 'HealthCheck') readerStatuses.push(m.status);
      });
      // let the pypz reader acknowledge before the writer stops
      const deadline = Date.now() + 60_000;
      while (!readerStatuses.includes('Acknowledged') && Date.now() < deadline) {
        await writer.invokeSyncStatusUpdate();
        await new Promise((r) => setTimeout(r, 200));
      }
      await finishWriter(writer);
      const run = await peer;
      ok(run, 'the pypz reader');
      assert.deepEqual(
        run.events.filter((e) => e.event === 'record').map((e) => e.record),
        sent,
        'the pypz reader decoded every record, in order',
      );
      const transitions = run.events
        .filter((e) => e.event === 'transition' && e.from === `${ch}@sluice.output_port`)
        .map((e) => e.current);
      for (const s of ['Started', 'Stopped', 'Closed']) {
        assert.ok(
          transitions.includes(s),
          `pypz saw the sluice writer ${s} (transitions: ${transitions.join(', ')})`,
        );
      }
      assert.ok(readerStatuses.includes('Started'), 'the sluice writer saw the pypz reader start');
      assert.ok(readerStatuses.includes('Acknowledged'), 'the sluice writer saw the pypz acknowledgement');
    });
  });
}
