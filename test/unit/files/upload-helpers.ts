/** Shared helpers of the upload tests (upload-data-file, upload-directory, upload-registry, upload-cli). */

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DataFileChunk, decodeChunk } from '../../../src/files/chunk-codec.ts';
import type { ProduceRecord, Producer, RecordMetadata, Transport } from '../../../src/transport/types.ts';

export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `sluice-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface ReadChunk {
  key: string;
  chunk: DataFileChunk;
}

/** Every record of `topic` (all partitions), decoded as chunks. */
export async function readChunks(t: Transport, topic: string): Promise<ReadChunk[]> {
  if (!(await t.listTopics()).includes(topic)) return [];
  const d = await t.describeTopic(topic);
  const total = d.partitions.reduce((s, p) => s + p.endOffset - p.startOffset, 0);
  const out: ReadChunk[] = [];
  if (total === 0) return out;
  const c = t.consumer({ groupId: `reader-${randomUUID()}`, topics: [topic], start: 'earliest' });
  try {
    while (out.length < total) {
      const recs = await c.poll({ timeoutMs: 5000 });
      if (recs.length === 0) throw new Error(`read only ${out.length} of ${total} records of ${topic}`);
      for (const r of recs)
        out.push({ key: r.key?.toString('utf8') ?? '', chunk: decodeChunk(r.value) as DataFileChunk });
    }
  } finally {
    await c.close();
  }
  return out;
}

/** Every record value of `topic` as text (heartbeats). */
export async function readTexts(t: Transport, topic: string): Promise<Array<{ key: string; value: string }>> {
  if (!(await t.listTopics()).includes(topic)) return [];
  const d = await t.describeTopic(topic);
  const total = d.partitions.reduce((s, p) => s + p.endOffset - p.startOffset, 0);
  const out: Array<{ key: string; value: string }> = [];
  if (total === 0) return out;
  const c = t.consumer({ groupId: `reader-${randomUUID()}`, topics: [topic], start: 'earliest' });
  try {
    while (out.length < total) {
      const recs = await c.poll({ timeoutMs: 5000 });
      if (recs.length === 0) throw new Error(`read only ${out.length} of ${total} records of ${topic}`);
      for (const r of recs)
        out.push({ key: r.key?.toString('utf8') ?? '', value: r.value?.toString('utf8') ?? '' });
    }
  } finally {
    await c.close();
  }
  return out;
}

/**
 * A producer around another one that lets a test intervene: `before(record, n)` runs before the n-th send (1-based;
 * throw to fail it), `after(record, n)` after it was acknowledged. Counts concurrent sends.
 */
export class HookedProducer implements Producer {
  sends = 0;
  outstanding = 0;
  maxOutstanding = 0;
  constructor(
    readonly inner: Producer,
    readonly hooks: {
      before?: (r: ProduceRecord, n: number) => void | Promise<void>;
      after?: (r: ProduceRecord, n: number) => void;
    } = {},
  ) {}

  async send(records: ProduceRecord | ProduceRecord[]): Promise<RecordMetadata[]> {
    const list = Array.isArray(records) ? records : [records];
    const n = ++this.sends;
    this.outstanding++;
    this.maxOutstanding = Math.max(this.maxOutstanding, this.outstanding);
    try {
      await this.hooks.before?.(list[0] as ProduceRecord, n);
      const m = await this.inner.send(list);
      this.hooks.after?.(list[0] as ProduceRecord, n);
      return m;
    } finally {
      this.outstanding--;
    }
  }
  sendAndCommit(): Promise<RecordMetadata[]> {
    throw new Error('not used');
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** A producer that stores records in memory and acknowledges each on a later turn of the event loop. */
export class MemoryProducer implements Producer {
  readonly records: ProduceRecord[] = [];
  async send(records: ProduceRecord | ProduceRecord[]): Promise<RecordMetadata[]> {
    const list = Array.isArray(records) ? records : [records];
    await new Promise<void>((resolve) => setImmediate(resolve));
    return list.map((r) => {
      this.records.push(r);
      return { topic: r.topic, partition: 0, offset: this.records.length - 1, timestamp: Date.now() };
    });
  }
  sendAndCommit(): Promise<RecordMetadata[]> {
    throw new Error('not used');
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}

/**
 * A producer that holds acknowledgements back until `batch` sends are waiting (or `total` sends were made), then
 * acknowledges them all a few milliseconds later. A correct upload therefore reaches exactly `batch` chunks in
 * flight; one that ignored its bound would show more (it has those milliseconds to send another chunk).
 */
export class GatedProducer extends MemoryProducer {
  sends = 0;
  outstanding = 0;
  maxOutstanding = 0;
  private waiting: Array<() => void> = [];
  constructor(
    readonly batch: number,
    readonly total: number,
  ) {
    super();
  }
  override async send(records: ProduceRecord | ProduceRecord[]): Promise<RecordMetadata[]> {
    this.sends++;
    this.outstanding++;
    this.maxOutstanding = Math.max(this.maxOutstanding, this.outstanding);
    const gate = new Promise<void>((resolve) => this.waiting.push(resolve));
    if (this.waiting.length >= this.batch || this.sends === this.total) {
      const release = this.waiting;
      this.waiting = [];
      setTimeout(() => {
        for (const r of release) r();
      }, 5);
    }
    await gate;
    this.outstanding--;
    return super.send(records);
  }
}
