import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { StatementSync } from 'node:sqlite';
import { SluiceError } from '../../errors.ts';
import { checkStaticPartition, requireGroupAndTopics } from '../consumer-options.ts';
import { decodeHeaders } from '../headers.ts';
import type {
  ConsumedRecord,
  Consumer,
  ConsumerOptions,
  PollOptions,
  TopicPartition,
  TopicPartitionOffset,
} from '../types.ts';
import type { EmbeddedTransport } from './embedded.ts';

/**
 * A consumer-group member on the embedded broker.
 *
 * Membership is a lease: every heartbeat renews this member's row and the leases of the partitions it owns. The
 * live members of a group (sorted by id) split each subscribed topic's partitions: partition p belongs to member
 * `p % n`. A member releases a partition it should no longer have (after `onRevoke`, so it can commit), and claims
 * one it should have once nobody holds it, or once the holder's lease has run out (a dead process). A partition is
 * therefore never read by two members of a group at once, as long as clocks agree (one machine, one clock).
 */

interface Assigned {
  topic: string;
  partition: number;
  tid: number;
  /** Next offset to fetch from storage. */
  fetch: number;
  /** Next offset after the last record handed to the user. What `commit()` commits. */
  position: number;
}

const tpKey = (topic: string, partition: number): string => `${partition}\u0000${topic}`;

const HOST = hostname();

/** Member ids are `<host>-<pid>-<random>`; true when the member ran on this host and its process has exited. */
export function processIsGone(memberId: string): boolean {
  if (!memberId.startsWith(`${HOST}-`)) return false;
  const pid = Number(memberId.slice(HOST.length + 1).split('-')[0]);
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** A `records` row as fetched: offset, ts, key, value (inline), headers, then seg, pos, vlen, crc (in a segment). */
type RecordRow = [
  number,
  number,
  Uint8Array | null,
  Uint8Array | null,
  Uint8Array | null,
  number | null,
  number | null,
  number | null,
  number | null,
];

export class EmbeddedConsumer implements Consumer {
  readonly transport: EmbeddedTransport;
  readonly groupId: string;
  readonly memberId: string;
  private readonly topics: string[];
  private readonly options: ConsumerOptions;
  private readonly sessionTimeoutMs: number;
  private readonly heartbeatIntervalMs: number;
  private readonly maxPollRecords: number;
  private readonly maxPollBytes: number;
  /** Buffers for values read from segment files: the caller's pool (ConsumerOptions.valueBuffers) or fresh ones. */
  private readonly allocValue: (size: number) => Buffer;
  private readonly assigned = new Map<string, Assigned>();
  private readonly pausedSet = new Set<string>();
  /** Records fetched but not yet handed out (the iterator hands them out one by one). */
  private pending: ConsumedRecord[] = [];
  private joined: Promise<void> | undefined;
  private beat: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private autoTimer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private failure: unknown;
  /** Set when close() starts: polls return nothing, but onRevoke may still commit. */
  private stopping = false;
  private closed = false;
  private rotate = 0;
  private readonly fetchStmt: StatementSync;
  private readonly assignmentWaiters = new Set<() => void>();

  constructor(transport: EmbeddedTransport, options: ConsumerOptions) {
    requireGroupAndTopics(options);
    this.transport = transport;
    this.options = options;
    this.groupId = options.groupId;
    this.topics = [...new Set(options.topics)].sort();
    this.memberId = `${HOST}-${process.pid}-${randomBytes(4).toString('hex')}`;
    this.sessionTimeoutMs = options.sessionTimeoutMs ?? transport.sessionTimeoutMs;
    this.heartbeatIntervalMs =
      options.heartbeatIntervalMs ?? Math.min(3000, Math.max(50, this.sessionTimeoutMs / 3));
    this.maxPollRecords = options.maxPollRecords ?? 500;
    this.maxPollBytes = options.maxPollBytes ?? 16 * 1024 * 1024;
    const pool = options.valueBuffers;
    this.allocValue = pool === undefined ? Buffer.allocUnsafe : (size) => pool.take(size);
    if (!(this.heartbeatIntervalMs < this.sessionTimeoutMs)) {
      throw new SluiceError(
        'SLUICE_CONFIG_INVALID',
        `heartbeatIntervalMs (${this.heartbeatIntervalMs}) must be smaller than sessionTimeoutMs (${this.sessionTimeoutMs}); ` +
          'a third of the session timeout is a good value.',
      );
    }
    this.fetchStmt = transport.store.db.prepare(
      'SELECT offset, ts, key, value, headers, seg, pos, vlen, crc FROM records WHERE tid = ? AND partition = ? AND offset >= ? ' +
        'ORDER BY offset LIMIT ?',
    );
    this.fetchStmt.setReturnArrays(true);
  }

  // ---- membership ----------------------------------------------------------------------------------------------

  private ensureJoined(): Promise<void> {
    if (this.stopping) return Promise.resolve();
    if (this.joined === undefined) {
      this.joined = this.heartbeat();
      this.scheduleHeartbeat(this.heartbeatIntervalMs);
      if (this.options.autoCommitIntervalMs !== undefined) {
        this.autoTimer = setInterval(() => {
          this.commit().catch((err: unknown) => {
            this.failure ??= err;
          });
        }, this.options.autoCommitIntervalMs);
        this.autoTimer.unref();
      }
    }
    return this.joined;
  }

  private scheduleHeartbeat(ms: number): void {
    if (this.stopping) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.heartbeat()
        .catch((err: unknown) => {
          // a locked database only delays the heartbeat; anything else is reported by the next poll
          if (!(err instanceof SluiceError && err.canRetry)) this.failure ??= err;
        })
        .finally(() => this.scheduleHeartbeat(this.nextBeatMs));
    }, ms);
    this.timer.unref();
  }

  private nextBeatMs = 0;

  /** One membership round. Serialised: concurrent callers share the round in progress. */
  private heartbeat(): Promise<void> {
    if (this.beat === undefined) {
      this.beat = this.heartbeatOnce().finally(() => {
        this.beat = undefined;
      });
    }
    return this.beat;
  }

  /** The member id that must own a partition to commit it; undefined for a static assignment (no leases). */
  get leaseHolder(): string | undefined {
    return this.options.assign === undefined ? this.memberId : undefined;
  }

  private async heartbeatOnce(): Promise<void> {
    if (this.stopping) return;
    if (this.options.assign !== undefined) {
      this.nextBeatMs = this.heartbeatIntervalMs;
      if (this.assigned.size === 0) await this.assignStatic(this.options.assign);
      return;
    }
    const store = this.transport.store;
    const now = Date.now();
    const expires = now + this.sessionTimeoutMs;
    const me = this.memberId;
    const g = this.groupId;
    const plan = store.write(() => {
      store
        .stmt(
          'INSERT INTO members (group_id, member_id, topics, expires_at) VALUES (?, ?, ?, ?) ' +
            'ON CONFLICT (group_id, member_id) DO UPDATE SET topics = excluded.topics, expires_at = excluded.expires_at',
        )
        .run(g, me, JSON.stringify(this.topics), expires);
      store.stmt('DELETE FROM members WHERE group_id = ? AND expires_at < ?').run(g, now);
      // a member on this machine whose process is gone is dead now, not when its lease runs out
      for (const m of store.stmt('SELECT member_id FROM members WHERE group_id = ?').all(g) as Array<{
        member_id: string;
      }>) {
        if (m.member_id !== me && processIsGone(m.member_id)) {
          store.stmt('DELETE FROM members WHERE group_id = ? AND member_id = ?').run(g, m.member_id);
          store.stmt('DELETE FROM owners WHERE group_id = ? AND member_id = ?').run(g, m.member_id);
        }
      }
      store.stmt('DELETE FROM owners WHERE group_id = ? AND expires_at < ?').run(g, now);
      store.stmt('UPDATE owners SET expires_at = ? WHERE group_id = ? AND member_id = ?').run(expires, g, me);
      const members = store
        .stmt('SELECT member_id, topics FROM members WHERE group_id = ? ORDER BY member_id')
        .all(g) as Array<{ member_id: string; topics: string }>;
      const owners = new Map<string, string>();
      for (const o of store
        .stmt('SELECT topic, partition, member_id FROM owners WHERE group_id = ?')
        .all(g) as Array<{
        topic: string;
        partition: number;
        member_id: string;
      }>) {
        owners.set(tpKey(o.topic, o.partition), o.member_id);
      }
      const claim: Array<{ topic: string; partition: number; tid: number }> = [];
      const revoke: TopicPartition[] = [];
      let waiting = false;
      const insertOwner = store.stmt(
        'INSERT INTO owners (group_id, topic, partition, member_id, expires_at) VALUES (?, ?, ?, ?, ?)',
      );
      const wanted = new Set<string>();
      for (const topic of this.topics) {
        const row = this.transport.requireTopicSync(topic, this.options.autoCreateTopics ?? false);
        const subscribers = members
          .filter((m) => (JSON.parse(m.topics) as string[]).includes(topic))
          .map((m) => m.member_id);
        for (let p = 0; p < row.partitions; p++) {
          const k = tpKey(topic, p);
          const desired = subscribers[p % subscribers.length];
          const holder = owners.get(k);
          if (desired === me) wanted.add(k);
          if (holder === me) {
            if (desired !== me) revoke.push({ topic, partition: p });
            else if (!this.assigned.has(k)) claim.push({ topic, partition: p, tid: row.tid });
          } else if (desired === me) {
            if (holder === undefined) {
              insertOwner.run(g, topic, p, me, expires);
              claim.push({ topic, partition: p, tid: row.tid });
            } else {
              waiting = true;
            }
          }
        }
      }
      // partitions we believe are ours but whose lease another member took over (we stalled past the timeout)
      const lost: TopicPartition[] = [];
      for (const [k, a] of this.assigned) {
        if (owners.get(k) !== me && !claim.some((c) => tpKey(c.topic, c.partition) === k)) {
          lost.push({ topic: a.topic, partition: a.partition });
        }
      }
      return { claim, revoke, lost, waiting };
    });
    this.nextBeatMs = plan.waiting ? Math.min(100, this.heartbeatIntervalMs) : this.heartbeatIntervalMs;

    if (plan.lost.length > 0) {
      this.drop(plan.lost);
      await this.options.onRevoke?.(plan.lost);
    }
    if (plan.revoke.length > 0) {
      this.drop(plan.revoke);
      try {
        await this.options.onRevoke?.(plan.revoke);
      } finally {
        this.release(plan.revoke);
      }
    }
    if (plan.claim.length > 0 && !this.stopping) {
      const claimed = this.initPositions(plan.claim);
      await this.options.onAssign?.(claimed);
      for (const w of [...this.assignmentWaiters]) w();
    }
  }

  /** A static assignment: no membership row, no leases; the partitions are this consumer's until it closes. */
  private async assignStatic(partitions: TopicPartition[]): Promise<void> {
    const claim = this.transport.store.write(() =>
      partitions.map((tp) => {
        const row = this.transport.requireTopicSync(tp.topic, this.options.autoCreateTopics ?? false);
        checkStaticPartition(tp, this.topics, row.partitions);
        return { topic: tp.topic, partition: tp.partition, tid: row.tid };
      }),
    );
    if (this.stopping) return;
    const claimed = this.initPositions(claim);
    await this.options.onAssign?.(claimed);
    for (const w of [...this.assignmentWaiters]) w();
  }

  private drop(partitions: TopicPartition[]): void {
    const keys = new Set(partitions.map((p) => tpKey(p.topic, p.partition)));
    for (const k of keys) this.assigned.delete(k);
    this.pending = this.pending.filter((r) => !keys.has(tpKey(r.topic, r.partition)));
  }

  private release(partitions: TopicPartition[]): void {
    const store = this.transport.store;
    if (!store.db.isOpen) return;
    store.write(() => {
      const del = store.stmt(
        'DELETE FROM owners WHERE group_id = ? AND topic = ? AND partition = ? AND member_id = ?',
      );
      for (const p of partitions) del.run(this.groupId, p.topic, p.partition, this.memberId);
    });
  }

  private initPositions(claim: Array<{ topic: string; partition: number; tid: number }>): TopicPartition[] {
    const store = this.transport.store;
    const start = this.options.start ?? 'committed';
    const committed = store.stmt(
      'SELECT offset FROM group_offsets WHERE group_id = ? AND topic = ? AND partition = ?',
    );
    const bounds = store.stmt(
      'SELECT start_offset, end_offset FROM partitions WHERE tid = ? AND partition = ?',
    );
    const out: TopicPartition[] = [];
    for (const c of claim) {
      const b = bounds.get(c.tid, c.partition) as { start_offset: number; end_offset: number };
      let pos: number | undefined;
      if (typeof start === 'object') {
        pos = start.offsets.find((o) => o.topic === c.topic && o.partition === c.partition)?.offset;
      } else if (start === 'earliest') {
        pos = b.start_offset;
      } else if (start === 'latest') {
        pos = b.end_offset;
      }
      if (pos === undefined) {
        const row = committed.get(this.groupId, c.topic, c.partition) as { offset: number } | undefined;
        pos =
          row?.offset ?? ((this.options.resetTo ?? 'earliest') === 'latest' ? b.end_offset : b.start_offset);
      }
      this.assigned.set(tpKey(c.topic, c.partition), {
        topic: c.topic,
        partition: c.partition,
        tid: c.tid,
        fetch: pos,
        position: pos,
      });
      out.push({ topic: c.topic, partition: c.partition });
    }
    return out;
  }

  // ---- reading -------------------------------------------------------------------------------------------------

  private checkUsable(): void {
    if (this.closed) {
      throw new SluiceError(
        'SLUICE_CLOSED',
        `Consumer ${this.memberId} of group ${this.groupId} is closed. Make a new consumer.`,
      );
    }
    if (this.failure !== undefined) {
      const f = this.failure;
      this.failure = undefined;
      throw f;
    }
  }

  async poll(options: PollOptions = {}): Promise<ConsumedRecord[]> {
    if (this.stopping) return [];
    await this.ensureJoined();
    this.checkUsable();
    const max = options.maxRecords ?? this.maxPollRecords;
    const deadline = Date.now() + (options.timeoutMs ?? 1000);
    for (;;) {
      const records = this.take(max);
      if (records.length > 0 || this.stopping || Date.now() >= deadline) return records;
      await this.waitForData(deadline);
      if (this.stopping) return [];
      this.checkUsable();
    }
  }

  /**
   * Hands out up to `max` fetched records of unpaused partitions (fetching a batch from storage when none is
   * waiting) and moves each partition's position past what it hands out.
   */
  private take(max: number): ConsumedRecord[] {
    if (!this.pendingEligible()) this.fill(Math.max(max, this.maxPollRecords));
    let out: ConsumedRecord[];
    if (this.pausedSet.size === 0) {
      out = this.pending.length <= max ? this.pending : this.pending.slice(0, max);
      this.pending = this.pending.length <= max ? [] : this.pending.slice(max);
    } else {
      out = [];
      const keep: ConsumedRecord[] = [];
      for (const r of this.pending) {
        if (out.length < max && !this.pausedSet.has(tpKey(r.topic, r.partition))) out.push(r);
        else keep.push(r);
      }
      this.pending = keep;
    }
    for (const r of out) this.assigned.get(tpKey(r.topic, r.partition))!.position = r.offset + 1;
    return out;
  }

  private pendingEligible(): boolean {
    if (this.pausedSet.size === 0) return this.pending.length > 0;
    return this.pending.some((r) => !this.pausedSet.has(tpKey(r.topic, r.partition)));
  }

  /** Reads the next records of unpaused partitions from storage into `pending`, rotating for fairness. */
  private fill(max: number): void {
    const parts = [...this.assigned.entries()].filter(([k]) => !this.pausedSet.has(k));
    if (parts.length === 0) return;
    const startAt = this.rotate++ % parts.length;
    let n = 0;
    let bytes = 0;
    const store = this.transport.store;
    store.read(() => {
      for (let i = 0; i < parts.length && n < max && bytes < this.maxPollBytes; i++) {
        const a = parts[(startAt + i) % parts.length]![1];
        const rows: RecordRow[] = [];
        // iterate, not all(): stop reading large values once the byte budget is spent
        for (const row of this.fetchStmt.iterate(
          a.tid,
          a.partition,
          a.fetch,
          max - n,
        ) as Iterable<RecordRow>) {
          rows.push(row);
          bytes += (row[2]?.length ?? 0) + (row[3]?.length ?? row[7] ?? 0);
          if (bytes >= this.maxPollBytes) break;
        }
        let taken = 0;
        for (const [offset, ts, key, value, headers, seg, pos, vlen, crc] of rows) {
          let v: Buffer | null;
          if (seg !== null) {
            try {
              v = store.segments!.read(
                a.tid,
                a.partition,
                { seg, pos: pos! },
                vlen!,
                crc!,
                { topic: a.topic, offset },
                this.allocValue,
              );
            } catch (err) {
              // retention removed the segment file after this read's snapshot: go on from the new start
              if ((err as NodeJS.ErrnoException).code === 'ENOENT') break;
              throw err;
            }
          } else {
            v = value === null ? null : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
          }
          this.pending.push({
            topic: a.topic,
            partition: a.partition,
            offset,
            timestamp: ts,
            key: key === null ? null : Buffer.from(key.buffer, key.byteOffset, key.byteLength),
            value: v,
            headers: decodeHeaders(headers),
          });
          taken++;
        }
        if (taken === 0) {
          const b = store
            .stmt('SELECT start_offset FROM partitions WHERE tid = ? AND partition = ?')
            .get(a.tid, a.partition) as { start_offset: number } | undefined;
          // records below the start were deleted by retention: continue from the oldest one still stored
          if (b !== undefined && b.start_offset > a.fetch) {
            a.fetch = b.start_offset;
            if (a.position < a.fetch) a.position = a.fetch;
          }
          continue;
        }
        n += taken;
        a.fetch = rows[taken - 1]![0] + 1;
      }
    });
  }

  /** Resolves when this process wrote something, another process committed, the consumer closed, or time ran out. */
  private waitForData(deadline: number): Promise<void> {
    const store = this.transport.store;
    const version = store.dataVersion();
    return new Promise((resolve) => {
      let delay = 1;
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        clearTimeout(timer);
        this.transport.waiters.delete(done);
        this.wake = undefined;
        resolve();
      };
      const tick = (): void => {
        if (this.stopping || Date.now() >= deadline || !store.db.isOpen || store.dataVersion() !== version) {
          done();
          return;
        }
        delay = Math.min(delay * 2, 50);
        timer = setTimeout(tick, Math.max(1, Math.min(delay, deadline - Date.now())));
      };
      this.wake = done;
      this.transport.waiters.add(done);
      timer = setTimeout(tick, delay);
    });
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ConsumedRecord> {
    // one record at a time, so a loop that stops early leaves the rest for the next poll, uncounted
    while (!this.stopping) {
      await this.ensureJoined();
      this.checkUsable();
      const [r] = this.take(1);
      if (r !== undefined) yield r;
      else await this.waitForData(Date.now() + 1000);
    }
  }

  // ---- offsets -------------------------------------------------------------------------------------------------

  async commit(offsets?: TopicPartitionOffset[]): Promise<void> {
    await this.ensureJoined();
    this.checkUsable();
    const list =
      offsets ??
      [...this.assigned.values()].map((a) => ({
        topic: a.topic,
        partition: a.partition,
        offset: a.position,
      }));
    if (list.length === 0) return;
    const now = Date.now();
    this.transport.store.write(() => this.transport.commitSync(this.groupId, this.leaseHolder, list, now));
  }

  /** Called after a `sendAndCommit` so positions never fall behind what the group has committed. */
  noteCommitted(offsets: TopicPartitionOffset[]): void {
    for (const o of offsets) {
      const a = this.assigned.get(tpKey(o.topic, o.partition));
      if (a !== undefined && a.position < o.offset) a.position = o.offset;
    }
  }

  async committed(partitions: TopicPartition[]): Promise<Array<number | undefined>> {
    this.checkUsable();
    const s = this.transport.store.stmt(
      'SELECT offset FROM group_offsets WHERE group_id = ? AND topic = ? AND partition = ?',
    );
    return this.transport.store.read(() =>
      partitions.map(
        (p) => (s.get(this.groupId, p.topic, p.partition) as { offset: number } | undefined)?.offset,
      ),
    );
  }

  pause(partitions: TopicPartition[]): void {
    for (const p of partitions) this.pausedSet.add(tpKey(p.topic, p.partition));
  }

  resume(partitions: TopicPartition[]): void {
    for (const p of partitions) this.pausedSet.delete(tpKey(p.topic, p.partition));
    this.wake?.();
  }

  paused(): TopicPartition[] {
    return [...this.assigned.values()]
      .filter((a) => this.pausedSet.has(tpKey(a.topic, a.partition)))
      .map((a) => ({ topic: a.topic, partition: a.partition }));
  }

  assignment(): TopicPartition[] {
    return [...this.assigned.values()]
      .map((a) => ({ topic: a.topic, partition: a.partition }))
      .sort((x, y) => x.topic.localeCompare(y.topic) || x.partition - y.partition);
  }

  async waitForAssignment(timeoutMs = 30_000): Promise<TopicPartition[]> {
    await this.ensureJoined();
    this.checkUsable();
    if (this.assigned.size > 0 || this.stopping) return this.assignment();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      const w = (): void => {
        this.assignmentWaiters.delete(w);
        done();
      };
      this.assignmentWaiters.add(w);
    });
    this.checkUsable();
    return this.assignment();
  }

  seek(position: TopicPartitionOffset): void {
    const a = this.assigned.get(tpKey(position.topic, position.partition));
    if (a === undefined) {
      throw new SluiceError(
        'SLUICE_NOT_ASSIGNED',
        `Cannot seek ${position.topic}[${position.partition}]: it is not assigned to this consumer. ` +
          'Seek from onAssign, or after waitForAssignment(), to a partition listed by assignment().',
      );
    }
    a.fetch = position.offset;
    a.position = position.offset;
    this.pending = this.pending.filter(
      (r) => !(r.topic === position.topic && r.partition === position.partition),
    );
  }

  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private closing: Promise<void> | undefined;

  private async closeOnce(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.timer);
    clearInterval(this.autoTimer);
    this.wake?.();
    for (const w of [...this.assignmentWaiters]) w();
    await this.beat?.catch(() => undefined);
    const store = this.transport.store;
    const mine = this.assignment();
    try {
      if (this.options.autoCommitIntervalMs !== undefined && mine.length > 0) await this.commit();
      if (mine.length > 0) await this.options.onRevoke?.(mine);
    } finally {
      this.closed = true;
      this.assigned.clear();
      this.pending = [];
      if (store.db.isOpen && this.joined !== undefined) {
        store.write(() => {
          store
            .stmt('DELETE FROM owners WHERE group_id = ? AND member_id = ?')
            .run(this.groupId, this.memberId);
          store
            .stmt('DELETE FROM members WHERE group_id = ? AND member_id = ?')
            .run(this.groupId, this.memberId);
        });
      }
      this.transport.untrack(this);
    }
  }
}
