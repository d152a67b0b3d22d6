import { randomBytes, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Channel, ConsumeMessage } from 'amqplib';
import { describeError, SluiceError } from '../../errors.ts';
import { checkStaticPartition, requireGroupAndTopics } from '../consumer-options.ts';
import type {
  ConsumedRecord,
  Consumer,
  ConsumerOptions,
  PollOptions,
  TopicPartition,
  TopicPartitionOffset,
} from '../types.ts';
import { amqpCode, type Link, Publisher, StreamReader } from './link.ts';
import { RecordLog } from './log.ts';
import {
  type AnnounceMessage,
  applyOffsets,
  assignPartitions,
  decodeRecord,
  groupExchange,
  leaseQueue,
  memberQueue,
  type OffsetsRecord,
  offsetsStream,
  parseAnnounce,
  parseOffsetsRecord,
  partitionQueue,
  type StreamOffsetSpec,
  startSpec,
  tpKey,
} from './model.ts';
import type { RabbitMqTransport } from './transport.ts';

interface Buffered {
  record: ConsumedRecord;
  msg: ConsumeMessage;
  channel: Channel;
  bytes: number;
}

interface Part {
  topic: string;
  partition: number;
  queue: string;
  reader: StreamReader;
  /** Deliveries not yet handed to the user (acknowledged, i.e. credit returned, only when handed out). */
  buffer: Buffered[];
  /** Next offset to hand out; undefined until the first delivery when the start was `first` / `next`. */
  position: number | undefined;
  /** Where the current reader started (used to resume when nothing was handed out yet). */
  spec: StreamOffsetSpec;
}

const HOST = hostname();

/**
 * A consumer-group member on RabbitMQ.
 *
 * - Membership: each member has an exclusive queue bound to the group's fanout exchange and announces itself
 *   there every heartbeat (`hello`), on joining (asking the others to answer at once) and on leaving (`bye`). A
 *   member not heard from for `sessionTimeoutMs` (by the receiver's clock) is dead.
 * - Assignment: every member computes the same split from the live members (`assignPartitions`); no leader.
 * - Leases: owning a partition means holding the exclusive queue `sluice.lease.<group>.<p>.<topic>` on this
 *   member's own connection. RabbitMQ lets only one connection hold an exclusive queue and deletes it when that
 *   connection dies, so a partition never has two owners, and a crashed member's partitions free up as soon as the
 *   broker notices (at once for a killed process, within two AMQP heartbeats for a silent network).
 * - Offsets: commits are appended to the group's offsets stream; the committed offset of a partition is the last
 *   commit for it. A member that claims a partition first syncs that stream, so it sees the previous owner's final
 *   commit (made in onRevoke, before the lease was released).
 * - Reading: one stream consumer (own channel, `x-stream-offset`) per assigned partition. Deliveries are acknowledged
 *   when handed out, so the per-partition prefetch bounds what is buffered, and a paused partition simply stops.
 */
export class RabbitMqConsumer implements Consumer {
  readonly transport: RabbitMqTransport;
  readonly groupId: string;
  readonly memberId: string;
  readonly #options: ConsumerOptions;
  readonly #topics: string[];
  readonly #sessionTimeoutMs: number;
  readonly #heartbeatIntervalMs: number;
  readonly #maxPollRecords: number;
  readonly #maxPollBytes: number;
  readonly #prefetch: number;
  readonly #link: Link;
  readonly #publisher: Publisher;
  readonly #committed = new Map<string, number>();
  readonly #offsets: RecordLog<OffsetsRecord>;
  readonly #members = new Map<string, { topics: string[]; seen: number }>();
  readonly #assigned = new Map<string, Part>();
  /** Partitions being handed over: no longer read, but still leased, so onRevoke can commit them. */
  readonly #revoking = new Map<string, Part>();
  readonly #paused = new Set<string>();
  readonly #assignmentWaiters = new Set<() => void>();
  #announce: Channel | undefined;
  #leaseChannel: Promise<Channel> | undefined;
  #counts = new Map<string, number>();
  #joined: Promise<void> | undefined;
  #round: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #autoTimer: NodeJS.Timeout | undefined;
  #wake: (() => void) | undefined;
  #failure: unknown;
  /** Leases are lost with the connection; false from a disconnection until they are claimed again. */
  #leasesValid = true;
  #reclaiming: Promise<void> | undefined;
  #rotate = 0;
  #stopping = false;
  #closed = false;
  #closing: Promise<void> | undefined;
  #offUp: (() => void) | undefined;
  #offDown: (() => void) | undefined;

  constructor(transport: RabbitMqTransport, options: ConsumerOptions) {
    requireGroupAndTopics(options);
    this.transport = transport;
    this.#options = options;
    this.groupId = options.groupId;
    this.#topics = [...new Set(options.topics)].sort();
    this.memberId = `${HOST}-${process.pid}-${randomBytes(4).toString('hex')}`;
    this.#sessionTimeoutMs = options.sessionTimeoutMs ?? transport.options.sessionTimeoutMs;
    this.#heartbeatIntervalMs =
      options.heartbeatIntervalMs ?? Math.min(3000, Math.max(50, Math.floor(this.#sessionTimeoutMs / 3)));
    if (!(this.#heartbeatIntervalMs < this.#sessionTimeoutMs)) {
      throw new SluiceError(
        'SLUICE_CONFIG_INVALID',
        `heartbeatIntervalMs (${this.#heartbeatIntervalMs}) must be smaller than sessionTimeoutMs (${this.#sessionTimeoutMs}); ` +
          'a third of the session timeout is a good value.',
      );
    }
    this.#maxPollRecords = options.maxPollRecords ?? 500;
    this.#maxPollBytes = options.maxPollBytes ?? 16 * 1024 * 1024;
    this.#prefetch = Math.max(16, Math.min(1000, this.#maxPollRecords));
    this.#link = transport.newLink(`consumer-${options.groupId}`);
    this.#publisher = new Publisher(this.#link);
    this.#offsets = new RecordLog(
      this.#link,
      this.#publisher,
      offsetsStream(this.groupId),
      parseOffsetsRecord,
      (rec) => applyOffsets(this.#committed, rec),
      transport.options.offsetWaitMs,
    );
    this.#members.set(this.memberId, { topics: this.#topics, seen: Number.POSITIVE_INFINITY });
  }

  // ---- membership ----------------------------------------------------------------------------------------------

  #ensureJoined(): Promise<void> {
    if (this.#stopping) return Promise.resolve();
    if (this.#joined === undefined) {
      this.#joined = this.#join();
      this.#joined.catch(() => {
        // a failed join (unknown topic, broker down) is retried by the next call
        this.#joined = undefined;
      });
    }
    return this.#joined;
  }

  async #join(): Promise<void> {
    for (const topic of this.#topics) {
      this.#counts.set(
        topic,
        await this.transport.partitionCount(topic, this.#options.autoCreateTopics ?? false),
      );
    }
    await this.transport.registerGroup(this.groupId);
    await this.#offsets.open();
    if (this.#options.assign !== undefined) this.#checkStatic(this.#options.assign);
    else await this.#setupAnnounce();
    this.#offDown ??= this.#link.onDown(() => this.#onDown());
    this.#offUp ??= this.#link.onUp(() => {
      this.#reclaiming = this.#onUpWithRetry().catch((err: unknown) => {
        this.#failure ??= err;
      });
    });
    if (this.#options.assign === undefined) {
      this.#send({ type: 'hello', member: this.memberId, topics: this.#topics, assignment: [], reply: true });
      // give members that answer at once a moment, so the first round does not grab everything only to hand it back
      await new Promise((r) => setTimeout(r, Math.min(100, this.#heartbeatIntervalMs)));
    }
    await this.#runRound();
    // heartbeats (and retries of leases still held by others) from now on
    this.#schedule(this.#nextRoundMs);
    if (this.#options.autoCommitIntervalMs !== undefined) {
      this.#autoTimer = setInterval(() => {
        this.commit().catch((err: unknown) => {
          this.#failure ??= err;
        });
      }, this.#options.autoCommitIntervalMs);
      this.#autoTimer.unref();
    }
  }

  /** A static assignment (`assign`) must name existing partitions of subscribed topics. */
  #checkStatic(assign: TopicPartition[]): void {
    for (const tp of assign) checkStaticPartition(tp, this.#topics, this.#counts.get(tp.topic) ?? 0);
  }

  async #setupAnnounce(): Promise<void> {
    const ch = await this.#link.channel();
    const ex = groupExchange(this.groupId);
    await ch.assertExchange(ex, 'fanout', { durable: true, autoDelete: false });
    const q = memberQueue(this.groupId, this.memberId);
    await ch.assertQueue(q, { exclusive: true, autoDelete: true, durable: false });
    await ch.bindQueue(q, ex, '');
    await ch.consume(
      q,
      (msg) => {
        if (msg !== null) this.#onAnnounce(parseAnnounce(msg.content));
      },
      { noAck: true },
    );
    this.#announce = ch;
  }

  #send(m: AnnounceMessage): void {
    const ch = this.#announce;
    if (ch === undefined) return;
    try {
      ch.publish(groupExchange(this.groupId), '', Buffer.from(JSON.stringify(m), 'utf8'));
    } catch {
      // the channel is closing with its connection; the next heartbeat announces again
    }
  }

  #hello(reply: boolean): void {
    this.#send({
      type: 'hello',
      member: this.memberId,
      topics: this.#topics,
      assignment: [...this.#assigned.values()].map((p) => [p.topic, p.partition]),
      reply,
    });
  }

  #onAnnounce(m: AnnounceMessage | undefined): void {
    if (m === undefined || m.member === this.memberId || this.#stopping) return;
    if (m.type === 'probe') {
      this.#hello(false);
      return;
    }
    if (m.type === 'bye') {
      if (this.#members.delete(m.member)) this.#schedule(0);
      return;
    }
    const known = this.#members.has(m.member);
    this.#members.set(m.member, { topics: m.topics, seen: Date.now() });
    if (m.reply) this.#hello(false);
    if (!known) this.#schedule(0);
  }

  #schedule(ms: number): void {
    if (this.#stopping || this.#joined === undefined) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#runRound()
        .catch((err: unknown) => {
          if (!(err instanceof SluiceError && err.canRetry)) this.#failure ??= err;
        })
        .finally(() => this.#schedule(this.#nextRoundMs));
    }, ms);
    this.#timer.unref();
  }

  #nextRoundMs = 0;

  /** One membership round; concurrent callers share the round in progress. */
  #runRound(): Promise<void> {
    this.#round ??= this.#roundOnce().finally(() => {
      this.#round = undefined;
    });
    return this.#round;
  }

  async #roundOnce(): Promise<void> {
    if (this.#stopping) return;
    this.#nextRoundMs = this.#heartbeatIntervalMs;
    if (!this.#link.connected || !this.#leasesValid) return;
    this.#hello(false);
    const now = Date.now();
    for (const [id, m] of this.#members) {
      if (id !== this.memberId && now - m.seen > this.#sessionTimeoutMs) this.#members.delete(id);
    }
    const desired = new Set(
      (
        this.#options.assign ??
        assignPartitions(
          [...this.#members].map(([memberId, m]) => ({ memberId, topics: m.topics })),
          this.#counts,
        ).get(this.memberId) ??
        []
      ).map((tp) => tpKey(tp.topic, tp.partition)),
    );
    const revoke = [...this.#assigned.values()].filter((p) => !desired.has(tpKey(p.topic, p.partition)));
    if (revoke.length > 0) {
      const list = revoke.map((p) => ({ topic: p.topic, partition: p.partition }));
      await this.#drop(revoke);
      for (const p of revoke) this.#revoking.set(tpKey(p.topic, p.partition), p);
      try {
        await this.#options.onRevoke?.(list);
      } finally {
        for (const p of revoke) this.#revoking.delete(tpKey(p.topic, p.partition));
        await this.#release(list);
      }
    }
    const claimed: TopicPartition[] = [];
    let waiting = false;
    for (const k of desired) {
      if (this.#assigned.has(k) || this.#stopping) continue;
      const [p, topic] = k.split('\u0000') as [string, string];
      const tp = { topic, partition: Number(p) };
      if (await this.#claim(tp)) claimed.push(tp);
      else waiting = true;
    }
    if (waiting) this.#nextRoundMs = Math.min(100, this.#heartbeatIntervalMs);
    if (claimed.length > 0 && !this.#stopping) {
      try {
        // the previous owner's last commit is in the offsets stream before our claim: read up to here
        await this.#offsets.sync();
        await Promise.all(claimed.map((tp) => this.#startPart(tp)));
      } catch (err) {
        await this.#release(claimed);
        for (const tp of claimed) {
          const part = this.#assigned.get(tpKey(tp.topic, tp.partition));
          this.#assigned.delete(tpKey(tp.topic, tp.partition));
          await part?.reader.stop();
        }
        throw err;
      }
      await this.#options.onAssign?.(claimed);
      for (const w of [...this.#assignmentWaiters]) w();
      this.#hello(false);
    }
  }

  #lease(): Promise<Channel> {
    if (this.#leaseChannel === undefined) {
      const p = this.#link.channel().then((ch) => {
        ch.on('close', () => {
          if (this.#leaseChannel === p) this.#leaseChannel = undefined;
        });
        return ch;
      });
      p.catch(() => {
        if (this.#leaseChannel === p) this.#leaseChannel = undefined;
      });
      this.#leaseChannel = p;
    }
    return this.#leaseChannel;
  }

  /** Takes the partition's lease; false when another member holds it (RESOURCE_LOCKED). */
  async #claim(tp: TopicPartition): Promise<boolean> {
    if (this.#options.assign !== undefined) return true; // static: no leases
    const ch = await this.#lease();
    try {
      await ch.assertQueue(leaseQueue(this.groupId, tp.topic, tp.partition), {
        exclusive: true,
        autoDelete: false,
        durable: false,
      });
      return true;
    } catch (err) {
      this.#leaseChannel = undefined; // a channel error closed the channel
      if (amqpCode(err) === 405) return false;
      throw err;
    }
  }

  async #release(list: TopicPartition[]): Promise<void> {
    if (this.#options.assign !== undefined) return;
    if (!this.#link.connected) return; // leases died with the connection
    const ch = await this.#lease().catch(() => undefined);
    if (ch === undefined) return;
    for (const tp of list) {
      await ch.deleteQueue(leaseQueue(this.groupId, tp.topic, tp.partition)).catch(() => {
        this.#leaseChannel = undefined;
      });
    }
  }

  async #startPart(tp: TopicPartition): Promise<void> {
    const k = tpKey(tp.topic, tp.partition);
    const spec = startSpec(this.#options.start, this.#options.resetTo, tp, this.#committed.get(k));
    const part: Part = {
      topic: tp.topic,
      partition: tp.partition,
      queue: partitionQueue(tp.topic, tp.partition),
      reader: undefined as unknown as StreamReader,
      buffer: [],
      position: typeof spec === 'number' ? spec : undefined,
      spec,
    };
    part.reader = this.#reader(part);
    this.#assigned.set(k, part);
    await part.reader.start();
  }

  #reader(part: Part): StreamReader {
    const reader: StreamReader = new StreamReader(this.#link, {
      queue: part.queue,
      start: part.spec,
      prefetch: this.#prefetch,
      autoAck: false,
      onMessage: (msg, offset, channel) => {
        if (part.reader !== reader) return;
        // a resumed or seeking reader may start a little early: skip what was already handed out
        if (part.position !== undefined && offset < part.position) {
          reader.ack(msg, channel);
          return;
        }
        const last = part.buffer[part.buffer.length - 1];
        if (last !== undefined && offset <= last.record.offset) {
          reader.ack(msg, channel);
          return;
        }
        const record = decodeRecord(msg, part.topic, part.partition);
        part.buffer.push({
          record,
          msg,
          channel,
          bytes: (record.key?.length ?? 0) + (record.value?.length ?? 0),
        });
        this.#wake?.();
      },
      onCancel: () => {
        // the queue was deleted (topic deleted): nothing more will come from it
      },
      onFailure: (err) => {
        if (part.reader === reader) this.#failure ??= err;
      },
      resume: () => (part.position !== undefined ? part.position : part.spec),
    });
    return reader;
  }

  async #drop(parts: Part[]): Promise<void> {
    for (const p of parts) this.#assigned.delete(tpKey(p.topic, p.partition));
    await Promise.all(parts.map((p) => p.reader.stop()));
  }

  #onDown(): void {
    this.#leasesValid = false;
    this.#leaseChannel = undefined;
    this.#announce = undefined;
    // buffered deliveries belong to the dead channels; the readers resume at the hand-out position
    for (const p of this.#assigned.values()) p.buffer = [];
  }

  /** `#onUp`, retried with back-off while a restarting broker still refuses declarations (bounded). */
  async #onUpWithRetry(): Promise<void> {
    const deadline = Date.now() + this.transport.options.reconnectTimeoutMs;
    let delay = 100;
    for (;;) {
      try {
        await this.#onUp();
        return;
      } catch (err) {
        if (this.#stopping || this.#link.closed || !this.#link.connected || Date.now() + delay > deadline) {
          // a new connection (if the link is down again) starts its own attempt
          if (!this.#link.connected && !this.#stopping) return;
          throw err;
        }
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 2000);
      }
    }
  }

  /** After a reconnection: announce again and take back the leases of the partitions this member had. */
  async #onUp(): Promise<void> {
    if (this.#stopping) return;
    if (this.#options.assign === undefined) await this.#setupAnnounce();
    const lost: Part[] = [];
    for (const p of [...this.#assigned.values()]) {
      if (!(await this.#claim(p))) lost.push(p);
    }
    this.#leasesValid = true;
    this.#hello(true);
    if (lost.length > 0) {
      await this.#drop(lost);
      await this.#options.onRevoke?.(lost.map((p) => ({ topic: p.topic, partition: p.partition })));
    }
    this.#schedule(0);
  }

  // ---- reading -------------------------------------------------------------------------------------------------

  #checkUsable(): void {
    if (this.#closed) {
      throw new SluiceError(
        'SLUICE_CLOSED',
        `Consumer ${this.memberId} of group ${this.groupId} is closed. Make a new consumer.`,
      );
    }
    if (this.#failure !== undefined) {
      const f = this.#failure;
      this.#failure = undefined;
      throw f;
    }
  }

  async poll(options: PollOptions = {}): Promise<ConsumedRecord[]> {
    if (this.#stopping) return [];
    await this.#ensureJoined();
    this.#checkUsable();
    const max = options.maxRecords ?? this.#maxPollRecords;
    const deadline = Date.now() + (options.timeoutMs ?? 1000);
    for (;;) {
      const records = this.#take(max);
      if (records.length > 0 || this.#stopping || Date.now() >= deadline) return records;
      await this.#waitForData(deadline);
      if (this.#stopping) return [];
      this.#checkUsable();
    }
  }

  /** Hands out up to `max` buffered records of unpaused partitions, rotating between partitions for fairness. */
  #take(max: number): ConsumedRecord[] {
    const parts = [...this.#assigned.entries()].filter(
      ([k, p]) => !this.#paused.has(k) && p.buffer.length > 0,
    );
    if (parts.length === 0) return [];
    const out: ConsumedRecord[] = [];
    let bytes = 0;
    const startAt = this.#rotate++ % parts.length;
    for (let i = 0; i < parts.length && out.length < max; i++) {
      const part = parts[(startAt + i) % parts.length]![1];
      let n = 0;
      while (n < part.buffer.length && out.length < max && (out.length === 0 || bytes < this.#maxPollBytes)) {
        const b = part.buffer[n]!;
        out.push(b.record);
        bytes += b.bytes;
        n++;
      }
      if (n === 0) continue;
      const last = part.buffer[n - 1]!;
      part.buffer = part.buffer.slice(n);
      part.position = last.record.offset + 1;
      this.transport.noteOffset(part.queue, last.record.offset);
      part.reader.ack(last.msg, last.channel);
      if (bytes >= this.#maxPollBytes) break;
    }
    return out;
  }

  #waitForData(deadline: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(1, deadline - Date.now()));
      const self = this;
      function done(): void {
        clearTimeout(timer);
        if (self.#wake === done) self.#wake = undefined;
        resolve();
      }
      this.#wake = done;
    });
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ConsumedRecord> {
    // one record at a time, so a loop that stops early leaves the rest for the next poll, uncounted
    while (!this.#stopping) {
      await this.#ensureJoined();
      this.#checkUsable();
      const [r] = this.#take(1);
      if (r !== undefined) yield r;
      else await this.#waitForData(Date.now() + 1000);
    }
  }

  // ---- offsets -------------------------------------------------------------------------------------------------

  /** Waits (bounded by the transport's reconnect timeout) until this member's leases are valid again. */
  async #leasesReady(): Promise<void> {
    if (this.#leasesValid) return;
    const limit = Date.now() + this.transport.options.reconnectTimeoutMs;
    while (!this.#leasesValid && !this.#closed && Date.now() < limit) {
      await this.#link.model();
      await this.#reclaiming;
      if (!this.#leasesValid) await new Promise((r) => setTimeout(r, 50));
    }
  }

  async commit(offsets?: TopicPartitionOffset[]): Promise<void> {
    if (this.#closed) this.#checkUsable();
    await this.#ensureJoined();
    this.#checkUsable();
    await this.#leasesReady();
    const list =
      offsets ??
      [...this.#assigned.values(), ...this.#revoking.values()]
        .filter((p) => p.position !== undefined)
        .map((p) => ({ topic: p.topic, partition: p.partition, offset: p.position! }));
    if (list.length === 0) return;
    for (const o of list) {
      if (!Number.isInteger(o.offset) || o.offset < 0) {
        throw new SluiceError(
          'SLUICE_CONFIG_INVALID',
          `Cannot commit offset ${o.offset} for ${o.topic}[${o.partition}]: offsets are whole numbers ≥ 0 (the next offset to read).`,
        );
      }
      const k = tpKey(o.topic, o.partition);
      if ((!this.#assigned.has(k) && !this.#revoking.has(k)) || !this.#leasesValid) {
        throw new SluiceError(
          'SLUICE_REBALANCE',
          `Cannot commit ${o.topic}[${o.partition}] for group ${this.groupId}: this consumer does not own that ` +
            'partition (it was reassigned after a rebalance, a missed heartbeat or a lost connection). Its ' +
            'uncommitted records will be delivered to the new owner; drop the work in progress for it.',
          { canRetry: false, details: { topic: o.topic, partition: o.partition, groupId: this.groupId } },
        );
      }
    }
    await this.#offsets.append({
      op: 'commit',
      id: randomUUID(),
      member: this.memberId,
      offsets: list.map((o) => [o.topic, o.partition, o.offset]),
    });
  }

  async committed(partitions: TopicPartition[]): Promise<Array<number | undefined>> {
    this.#checkUsable();
    await this.#offsets.sync();
    return partitions.map((p) => this.#committed.get(tpKey(p.topic, p.partition)));
  }

  pause(partitions: TopicPartition[]): void {
    for (const p of partitions) this.#paused.add(tpKey(p.topic, p.partition));
  }

  resume(partitions: TopicPartition[]): void {
    for (const p of partitions) this.#paused.delete(tpKey(p.topic, p.partition));
    this.#wake?.();
  }

  paused(): TopicPartition[] {
    return [...this.#assigned.values()]
      .filter((p) => this.#paused.has(tpKey(p.topic, p.partition)))
      .map((p) => ({ topic: p.topic, partition: p.partition }));
  }

  assignment(): TopicPartition[] {
    return [...this.#assigned.values()]
      .map((p) => ({ topic: p.topic, partition: p.partition }))
      .sort((x, y) => x.topic.localeCompare(y.topic) || x.partition - y.partition);
  }

  async waitForAssignment(timeoutMs = 30_000): Promise<TopicPartition[]> {
    await this.#ensureJoined();
    this.#checkUsable();
    if (this.#assigned.size > 0 || this.#stopping) return this.assignment();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      const waiters = this.#assignmentWaiters;
      function done(): void {
        clearTimeout(timer);
        waiters.delete(done);
        resolve();
      }
      waiters.add(done);
    });
    this.#checkUsable();
    return this.assignment();
  }

  /** Moves the position: the partition's stream consumer is replaced by one starting at the new offset. */
  seek(position: TopicPartitionOffset): void {
    const part = this.#assigned.get(tpKey(position.topic, position.partition));
    if (part === undefined) {
      throw new SluiceError(
        'SLUICE_NOT_ASSIGNED',
        `Cannot seek ${position.topic}[${position.partition}]: it is not assigned to this consumer. ` +
          'Seek from onAssign, or after waitForAssignment(), to a partition listed by assignment().',
      );
    }
    if (!Number.isInteger(position.offset) || position.offset < 0) {
      throw new SluiceError(
        'SLUICE_CONFIG_INVALID',
        `Cannot seek ${position.topic}[${position.partition}] to ${position.offset}: give a whole number ≥ 0.`,
      );
    }
    const old = part.reader;
    part.buffer = [];
    part.position = position.offset;
    part.spec = position.offset;
    part.reader = this.#reader(part);
    void old.stop();
    part.reader.start().catch((err: unknown) => {
      this.#failure ??= err;
    });
  }

  close(): Promise<void> {
    this.#closing ??= this.#closeOnce();
    return this.#closing;
  }

  async #closeOnce(): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#timer);
    clearInterval(this.#autoTimer);
    this.#wake?.();
    for (const w of [...this.#assignmentWaiters]) w();
    await this.#round?.catch(() => undefined);
    await this.#joined?.catch(() => undefined);
    const mine = this.assignment();
    try {
      if (this.#options.autoCommitIntervalMs !== undefined && mine.length > 0) await this.commit();
      if (mine.length > 0) await this.#options.onRevoke?.(mine);
    } finally {
      this.#closed = true;
      this.#send({ type: 'bye', member: this.memberId });
      this.#offUp?.();
      this.#offDown?.();
      await Promise.all([...this.#assigned.values()].map((p) => p.reader.stop().catch(() => undefined)));
      this.#assigned.clear();
      await this.#offsets.close().catch(() => undefined);
      await this.#publisher.close().catch(() => undefined);
      // closing the connection deletes this member's exclusive queues: its member queue and its leases
      await this.#link.close().catch((err: unknown) => {
        void describeError(err);
      });
      this.transport.untrack(this);
    }
  }
}
