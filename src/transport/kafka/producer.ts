import { type MessageToProduce, Producer as PlatformaticProducer } from '@platformatic/kafka';
import { SluiceError } from '../../errors.ts';
import { makePartitioner, toBuffer } from '../partitioner.ts';
import type {
  Consumer,
  Partitioner,
  ProduceRecord,
  Producer,
  ProducerOptions,
  RecordMetadata,
  TopicPartitionOffset,
} from '../types.ts';
import { KafkaConsumer } from './consumer.ts';
import { closedError, toSluiceError } from './errors.ts';
import { baseClientOptions } from './options.ts';
import type { KafkaTransport } from './transport.ts';

type Message = MessageToProduce<Buffer, Buffer, Buffer, Buffer>;

/**
 * A record ready for the wire: the client's message object itself (partition resolved, bytes ready), plus its
 * estimated size and its timestamp as a number for the metadata.
 */
interface Prepared extends Message {
  partition: number;
  size: number;
  ts: number;
  /** Position in the round being sent. */
  index: number;
}

interface Pending {
  records: Prepared[];
  resolve: (meta: RecordMetadata[]) => void;
  reject: (err: unknown) => void;
}

/** Records taken into one round of requests at most (memory bound when many sends queue up). */
const MAX_ROUND_RECORDS = 20_000;
const MAX_ROUND_BYTES = 64 * 1024 * 1024;
/** Per-record overhead in a v2 batch (varints, attributes, deltas), rounded up. */
const RECORD_OVERHEAD = 24;
/** Batch header size. */
const BATCH_OVERHEAD = 61;

const PRODUCER_KEYS = new Set(['partitioner', 'autoCreateTopics', 'idempotent', 'transactionalId']);

function usage(message: string): SluiceError {
  return new SluiceError('SLUICE_USAGE', message);
}

function validateProducerOptions(options: ProducerOptions): void {
  if (typeof options !== 'object' || options === null) throw usage('Producer options must be an object.');
  for (const key of Object.keys(options)) {
    if (!PRODUCER_KEYS.has(key)) {
      throw usage(`Unknown producer option "${key}". Known options: ${[...PRODUCER_KEYS].join(', ')}.`);
    }
  }
  const p: Partitioner | undefined = options.partitioner;
  if (p !== undefined && p !== 'murmur2' && p !== 'round-robin' && typeof p !== 'function') {
    throw usage(
      `Producer option partitioner is ${JSON.stringify(p)}; use 'murmur2', 'round-robin' or a function (key, partitionCount) => partition.`,
    );
  }
  if (
    options.transactionalId !== undefined &&
    (typeof options.transactionalId !== 'string' || options.transactionalId === '')
  ) {
    throw usage('Producer option transactionalId must be a non-empty string, stable per logical producer.');
  }
  if (options.transactionalId !== undefined && options.idempotent === false) {
    throw usage(
      'A transactional producer is always idempotent: remove idempotent: false or the transactionalId.',
    );
  }
}

function validateRecord(r: ProduceRecord, index: number): void {
  const where = `record ${index}`;
  if (typeof r !== 'object' || r === null) throw usage(`${where} is not an object with topic and value.`);
  if (typeof r.topic !== 'string' || r.topic === '') {
    throw usage(`${where} has no topic: set topic to the name of an existing topic.`);
  }
  if (r.value === undefined) {
    throw usage(
      `${where} (topic "${r.topic}") has no value: give a Buffer or string, or null for a tombstone.`,
    );
  }
  if (r.value !== null && typeof r.value !== 'string' && !Buffer.isBuffer(r.value)) {
    throw usage(`${where} (topic "${r.topic}"): value must be a Buffer, a string or null.`);
  }
  if (r.key !== undefined && r.key !== null && typeof r.key !== 'string' && !Buffer.isBuffer(r.key)) {
    throw usage(`${where} (topic "${r.topic}"): key must be a Buffer, a string or null.`);
  }
  if (r.partition !== undefined && (!Number.isInteger(r.partition) || r.partition < 0)) {
    throw usage(`${where} (topic "${r.topic}"): partition ${r.partition} must be an integer >= 0.`);
  }
  if (r.timestamp !== undefined && (!Number.isFinite(r.timestamp) || r.timestamp < 0)) {
    throw usage(`${where} (topic "${r.topic}"): timestamp must be milliseconds since the epoch.`);
  }
  if (r.headers !== undefined) {
    if (typeof r.headers !== 'object' || r.headers === null) {
      throw usage(`${where} (topic "${r.topic}"): headers must be an object of Buffer or string values.`);
    }
    for (const [k, v] of Object.entries(r.headers)) {
      if (typeof v !== 'string' && !Buffer.isBuffer(v)) {
        throw usage(`${where} (topic "${r.topic}"): header "${k}" must be a Buffer or a string.`);
      }
    }
  }
}

/**
 * A sluice producer on `@platformatic/kafka`. Partitions are chosen here (Kafka's Java-client murmur2 for keys,
 * round-robin otherwise; the client's own default hashes differently), so every record goes out with an explicit
 * partition. Concurrent `send` calls are coalesced into shared requests, one at a time, so the idempotent
 * producer's sequence numbers and each partition's order follow the call order. Records to one partition are
 * split into batches of at most `maxBatchBytes`.
 */
export class KafkaProducer implements Producer {
  readonly #transport: KafkaTransport;
  readonly #options: ProducerOptions;
  readonly #partition: (topic: string, key: Buffer | null, count: number) => number;
  #client: PlatformaticProducer | undefined;
  #txClient: PlatformaticProducer | undefined;
  readonly #queue: Pending[] = [];
  #pumping: Promise<void> | undefined;
  #txChain: Promise<unknown> = Promise.resolve();
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(transport: KafkaTransport, options: ProducerOptions) {
    validateProducerOptions(options);
    this.#transport = transport;
    this.#options = { ...options };
    this.#partition = makePartitioner(options.partitioner);
  }

  #client_(): PlatformaticProducer {
    if (this.#client === undefined) {
      const o = this.#transport.config;
      this.#client = new PlatformaticProducer({
        ...baseClientOptions(o, 'producer'),
        idempotent: this.#options.idempotent ?? true,
        compression: o.compression,
        autocreateTopics: false,
      });
    }
    return this.#client;
  }

  #txClient_(): PlatformaticProducer {
    if (this.#txClient === undefined) {
      const o = this.#transport.config;
      this.#txClient = new PlatformaticProducer({
        ...baseClientOptions(o, 'txproducer'),
        idempotent: true,
        transactionalId: this.#options.transactionalId ?? `sluice-${o.clientId}-${crypto.randomUUID()}`,
        // InitProducerId must say "new producer" (-1/-1). The client's default (0/0) reads as an epoch bump of an
        // existing producer, which the broker answers with PRODUCER_FENCED once another instance used the id.
        producerId: -1n,
        producerEpoch: -1,
        compression: o.compression,
        autocreateTopics: false,
      });
    }
    return this.#txClient;
  }

  #checkOpen(): void {
    if (this.#closed) throw closedError('producer');
  }

  /** Validates, resolves partitions (creating topics when allowed) and serialises. */
  async #prepare(records: ProduceRecord[]): Promise<Prepared[]> {
    const topics = new Set<string>();
    for (let i = 0; i < records.length; i++) {
      validateRecord(records[i]!, i);
      topics.add(records[i]!.topic);
    }
    const counts = new Map<string, number>();
    for (const topic of topics) {
      counts.set(topic, await this.#transport.partitionCount(topic, this.#options.autoCreateTopics === true));
    }
    const now = Date.now();
    const nowBig = BigInt(now);
    return records.map((r): Prepared => {
      const count = counts.get(r.topic)!;
      const key = toBuffer(r.key);
      let partition: number;
      if (r.partition !== undefined) {
        if (r.partition >= count) {
          throw new SluiceError(
            'SLUICE_PARTITION_UNKNOWN',
            `Topic "${r.topic}" has ${count} partition(s) (0-${count - 1}); partition ${r.partition} does not exist. Send to an existing partition, leave partition out to use the partitioner, or add partitions to the topic.`,
            { details: { topic: r.topic, partition: r.partition } },
          );
        }
        partition = r.partition;
      } else {
        partition = this.#partition(r.topic, key, count);
        if (!Number.isInteger(partition) || partition < 0 || partition >= count) {
          throw usage(
            `The partitioner returned ${partition} for topic "${r.topic}" with ${count} partitions; it must return an integer from 0 to ${count - 1}.`,
          );
        }
      }
      const value = toBuffer(r.value);
      let headers: Map<Buffer, Buffer> | undefined;
      let size = RECORD_OVERHEAD + (key?.length ?? 0) + (value?.length ?? 0);
      if (r.headers !== undefined) {
        headers = new Map();
        for (const [k, v] of Object.entries(r.headers)) {
          const kb = Buffer.from(k, 'utf8');
          const vb = toBuffer(v);
          headers.set(kb, vb);
          size += 10 + kb.length + vb.length;
        }
      }
      const ts = r.timestamp ?? now;
      return {
        topic: r.topic,
        partition,
        key: key ?? undefined,
        value: value as Buffer,
        headers,
        timestamp: r.timestamp === undefined ? nowBig : BigInt(r.timestamp),
        size,
        ts,
        index: 0,
      };
    });
  }

  /**
   * Splits records into requests: request i carries the i-th batch of every partition, a batch being consecutive
   * records of one partition of at most maxBatchBytes. Returns, per request, the record indexes in wire order.
   */
  #plan(records: Prepared[]): Prepared[][] {
    const limit = this.#transport.config.maxBatchBytes;
    type Slot = { batches: Prepared[][]; used: number };
    const slots = new Map<string, Map<number, Slot>>();
    let last: Prepared | undefined;
    let lastSlot: Slot | undefined;
    for (const r of records) {
      // records usually come in runs of one partition: skip the lookups then
      if (
        last !== undefined &&
        lastSlot !== undefined &&
        r.partition === last.partition &&
        r.topic === last.topic
      ) {
        let batch = lastSlot.batches[lastSlot.batches.length - 1]!;
        if (batch.length > 0 && lastSlot.used + r.size > limit) {
          batch = [];
          lastSlot.batches.push(batch);
          lastSlot.used = BATCH_OVERHEAD;
        }
        batch.push(r);
        lastSlot.used += r.size;
        continue;
      }
      let byPartition = slots.get(r.topic);
      if (byPartition === undefined) {
        byPartition = new Map();
        slots.set(r.topic, byPartition);
      }
      let slot = byPartition.get(r.partition);
      if (slot === undefined) {
        slot = { batches: [[]], used: BATCH_OVERHEAD };
        byPartition.set(r.partition, slot);
      }
      let batch = slot.batches[slot.batches.length - 1]!;
      if (batch.length > 0 && slot.used + r.size > limit) {
        batch = [];
        slot.batches.push(batch);
        slot.used = BATCH_OVERHEAD;
      }
      batch.push(r);
      slot.used += r.size;
      last = r;
      lastSlot = slot;
    }
    const requests: Prepared[][] = [];
    for (const byPartition of slots.values()) {
      for (const slot of byPartition.values()) {
        slot.batches.forEach((batch, i) => {
          if (requests[i] === undefined) requests[i] = batch;
          else for (const r of batch) requests[i]!.push(r);
        });
      }
    }
    return requests;
  }

  /** Sends records (already prepared) through `send`, request by request; returns metadata in input order. */
  async #produce(
    records: Prepared[],
    send: (
      messages: Message[],
    ) => Promise<{ offsets?: Array<{ topic: string; partition: number; offset: bigint }> }>,
  ): Promise<RecordMetadata[]> {
    const out: RecordMetadata[] = new Array(records.length);
    for (let i = 0; i < records.length; i++) records[i]!.index = i;
    for (const request of this.#plan(records)) {
      const result = await send(request);
      // records of one partition are consecutive in one batch, from the base offset the broker assigned
      const next = new Map<string, Map<number, number>>();
      for (const o of result.offsets ?? []) {
        let byPartition = next.get(o.topic);
        if (byPartition === undefined) {
          byPartition = new Map();
          next.set(o.topic, byPartition);
        }
        byPartition.set(o.partition, Number(o.offset));
      }
      for (const r of request) {
        const byPartition = next.get(r.topic);
        const offset = byPartition?.get(r.partition);
        if (offset === undefined) {
          throw new SluiceError(
            'SLUICE_DELIVERY_FAILED',
            `Kafka acknowledged the request but not partition ${r.partition} of topic "${r.topic}". Retry the send; if it persists, check the broker logs.`,
          );
        }
        byPartition!.set(r.partition, offset + 1);
        out[r.index] = { topic: r.topic, partition: r.partition, offset, timestamp: r.ts };
      }
    }
    return out;
  }

  async send(records: ProduceRecord | ProduceRecord[]): Promise<RecordMetadata[]> {
    this.#checkOpen();
    const list = Array.isArray(records) ? records : [records];
    if (list.length === 0) return [];
    const prepared = await this.#prepare(list);
    this.#checkOpen();
    return new Promise<RecordMetadata[]>((resolve, reject) => {
      this.#queue.push({ records: prepared, resolve, reject });
      if (this.#pumping === undefined) this.#pumping = this.#pump();
    });
  }

  /** Sends queued sends in rounds; every send queued while a round is on the wire joins the next round. */
  async #pump(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const round: Pending[] = [];
        let count = 0;
        let bytes = 0;
        while (this.#queue.length > 0) {
          const next = this.#queue[0]!;
          if (
            round.length > 0 &&
            (count + next.records.length > MAX_ROUND_RECORDS || bytes > MAX_ROUND_BYTES)
          )
            break;
          round.push(this.#queue.shift()!);
          count += next.records.length;
          for (const r of next.records) bytes += r.size;
        }
        const all = round.flatMap((p) => p.records);
        try {
          const client = this.#client_();
          const meta = await this.#produce(all, (messages) => client.send({ messages }));
          if (round.length === 1) round[0]!.resolve(meta);
          else {
            let at = 0;
            for (const p of round) {
              p.resolve(meta.slice(at, at + p.records.length));
              at += p.records.length;
            }
          }
        } catch (err) {
          const topics = [...new Set(all.map((r) => r.topic))].join(', ');
          const mapped = toSluiceError(
            err,
            `send ${all.length} record(s) to ${topics}`,
            this.#transport.config.brokers,
            'SLUICE_DELIVERY_FAILED',
          );
          for (const p of round) p.reject(mapped);
        }
      }
    } finally {
      this.#pumping = undefined;
    }
  }

  async sendAndCommit(
    records: ProduceRecord[],
    consumer: Consumer,
    offsets: TopicPartitionOffset[],
  ): Promise<RecordMetadata[]> {
    this.#checkOpen();
    if (!(consumer instanceof KafkaConsumer)) {
      throw usage(
        'sendAndCommit on Kafka needs a consumer made by a Kafka transport (transport.consumer(...)), so the offsets go to its group.',
      );
    }
    if (!Array.isArray(records) || !Array.isArray(offsets)) {
      throw usage(
        'sendAndCommit(records, consumer, offsets) takes an array of records and an array of offsets.',
      );
    }
    for (const [i, o] of offsets.entries()) {
      if (
        typeof o !== 'object' ||
        o === null ||
        typeof o.topic !== 'string' ||
        !Number.isInteger(o.partition) ||
        o.partition < 0 ||
        !Number.isInteger(o.offset) ||
        o.offset < 0
      ) {
        throw usage(
          `sendAndCommit offset ${i} must be { topic, partition, offset } with integer partition and offset >= 0 (the next offset to read).`,
        );
      }
    }
    const prepared = await this.#prepare(records);
    const run = async (): Promise<RecordMetadata[]> => {
      this.#checkOpen();
      // Ownership is checked first so a consumer that lost its partitions sends nothing at all; the broker checks
      // the group generation again when the offsets join the transaction.
      const group = await consumer.transactionGroup(offsets);
      const client = this.#txClient_();
      let tx: Awaited<ReturnType<PlatformaticProducer['beginTransaction']>> | undefined;
      try {
        tx = await client.beginTransaction();
        const activeTx = tx;
        const meta = await this.#produce(prepared, (messages) => activeTx.send({ messages }));
        if (offsets.length > 0) {
          await tx.addConsumer({ groupId: group.groupId } as never);
          // one at a time: the client de-duplicates concurrent offset commits of one transaction
          for (const o of offsets) {
            await tx.addOffset({
              topic: o.topic,
              partition: o.partition,
              offset: BigInt(o.offset) - 1n,
              metadata: { consumer: group },
            } as never);
          }
        }
        await tx.commit();
        return meta;
      } catch (err) {
        if (tx !== undefined && !tx.completed) await tx.abort().catch(() => undefined);
        throw toSluiceError(
          err,
          `send ${prepared.length} record(s) and commit ${offsets.length} offset(s) in one transaction`,
          this.#transport.config.brokers,
          'SLUICE_DELIVERY_FAILED',
        );
      }
    };
    const result = this.#txChain.then(run, run);
    this.#txChain = result.catch(() => undefined);
    return result;
  }

  async flush(): Promise<void> {
    while (this.#pumping !== undefined) await this.#pumping;
    await this.#txChain;
  }

  async close(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closed = true;
    this.#closing = (async () => {
      await this.flush();
      await Promise.all([this.#client?.close(true), this.#txClient?.close(true)]);
      this.#transport.forget(this);
    })();
    return this.#closing;
  }
}
