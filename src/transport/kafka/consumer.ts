import {
  type API,
  type ClusterMetadata,
  type Connection,
  ConnectionPool,
  type fetchV17,
  kGetApi,
  kOptions,
  ListOffsetTimestamps,
  Consumer as PlatformaticConsumer,
} from '@platformatic/kafka';
import { isSluiceError, SluiceError } from '../../errors.ts';
import { checkStaticPartition } from '../consumer-options.ts';
import type {
  ConsumedRecord,
  Consumer,
  ConsumerOptions,
  PollOptions,
  StartPosition,
  TopicPartition,
  TopicPartitionOffset,
} from '../types.ts';
import { roundRobinAssigner } from './assigner.ts';
import { closedError, flattenMessages, isNetworkError, kafkaErrorId, toSluiceError } from './errors.ts';
import { baseClientOptions } from './options.ts';
import { decodePartition } from './records.ts';
import type { KafkaTransport } from './transport.ts';

const EMPTY = Buffer.alloc(0);
const OFFSET_OUT_OF_RANGE = 1;
/**
 * The long-poll wait of a fetch sent while records are still buffered. A broker answers one connection's requests
 * in order, so a fetch that waits the full fetchMaxWaitMs for a caught-up partition holds back the refill of the
 * partitions being drained meanwhile: the buffer ran dry for 500 ms at a time when one partition of a topic had
 * reached its end. While the application still has records to work on, fetches wait at most this long.
 */
const DRAINING_FETCH_WAIT_MS = 20;
const READ_UNCOMMITTED = 0;
const READ_COMMITTED = 1;
const CONSUMER_KEYS = new Set([
  'groupId',
  'topics',
  'assign',
  'start',
  'resetTo',
  'autoCommitIntervalMs',
  'sessionTimeoutMs',
  'heartbeatIntervalMs',
  'maxPollRecords',
  'maxPollBytes',
  'valueBuffers',
  'isolation',
  'onAssign',
  'onRevoke',
  'autoCreateTopics',
]);

type FetchRequestTopic = fetchV17.FetchRequestTopic;
type FetchResponse = fetchV17.FetchResponse;

function getOrCreate<K, V>(map: Map<K, V>, key: K, create: () => V): V {
  let v = map.get(key);
  if (v === undefined) {
    v = create();
    map.set(key, v);
  }
  return v;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref());
const tpKey = (topic: string, partition: number): string => `${topic}\0${partition}`;

/** What a transaction needs to commit offsets for this consumer's group (TxnOffsetCommit). */
export interface TransactionGroup {
  groupId: string;
  generationId: number;
  memberId: string;
  coordinatorId: number;
}

/** One assigned partition. */
interface PartState {
  topic: string;
  partition: number;
  /** Position known and onAssign done: records may be fetched and returned. */
  ready: boolean;
  /** The offset of the next record poll() returns. */
  position: number;
  /** The offset the next fetch asks for (position + what is buffered, plus skipped control records). */
  fetchOffset: number;
  /** Fetched records from `head` on; slots below `head` were taken and are cleared (no reference kept). */
  buffer: Array<ConsumedRecord | undefined>;
  head: number;
  bufferedBytes: number;
  /** Bumped by seek and offset resets: fetch results for an older epoch are dropped. */
  epoch: number;
  paused: boolean;
  /** The position moved since the last commit() without arguments (poll, seek). */
  dirty: boolean;
  /** A seek made before the position was known; it wins over the start position. */
  pendingSeek: number | undefined;
  /** A fetch for this partition is on the wire. */
  inFlight: boolean;
}

function usage(message: string): SluiceError {
  return new SluiceError('SLUICE_USAGE', message);
}

function recordBytes(r: ConsumedRecord): number {
  return 96 + (r.key?.length ?? 0) + (r.value?.length ?? 0);
}

function validateConsumerOptions(o: ConsumerOptions): void {
  if (typeof o !== 'object' || o === null)
    throw usage('Consumer options must be an object with groupId and topics.');
  for (const key of Object.keys(o)) {
    if (!CONSUMER_KEYS.has(key)) {
      throw usage(`Unknown consumer option "${key}". Known options: ${[...CONSUMER_KEYS].join(', ')}.`);
    }
  }
  if (typeof o.groupId !== 'string' || o.groupId === '') {
    throw usage('Consumer option groupId must be a non-empty string naming the consumer group.');
  }
  if (
    !Array.isArray(o.topics) ||
    o.topics.length === 0 ||
    o.topics.some((t) => typeof t !== 'string' || t === '')
  ) {
    throw usage('Consumer option topics must be a non-empty array of topic names.');
  }
  if (
    o.assign !== undefined &&
    (!Array.isArray(o.assign) ||
      o.assign.length === 0 ||
      o.assign.some((tp) => typeof tp?.topic !== 'string' || !Number.isInteger(tp?.partition)))
  ) {
    throw usage(
      'Consumer option assign must be a non-empty array of { topic, partition } of the subscribed topics.',
    );
  }
  const s: StartPosition | undefined = o.start;
  if (s !== undefined && s !== 'committed' && s !== 'earliest' && s !== 'latest') {
    const offsets = (s as { offsets?: unknown })?.offsets;
    if (
      typeof s !== 'object' ||
      s === null ||
      !Array.isArray(offsets) ||
      !offsets.every(
        (x: TopicPartitionOffset) =>
          typeof x?.topic === 'string' &&
          Number.isInteger(x.partition) &&
          x.partition >= 0 &&
          Number.isInteger(x.offset) &&
          x.offset >= 0,
      )
    ) {
      throw usage(
        `Consumer option start is ${JSON.stringify(s)}; use 'committed', 'earliest', 'latest' or { offsets: [{ topic, partition, offset }] }.`,
      );
    }
  }
  if (o.resetTo !== undefined && o.resetTo !== 'earliest' && o.resetTo !== 'latest') {
    throw usage(`Consumer option resetTo is ${JSON.stringify(o.resetTo)}; use 'earliest' or 'latest'.`);
  }
  if (o.isolation !== undefined && o.isolation !== 'read_committed' && o.isolation !== 'read_uncommitted') {
    throw usage(
      `Consumer option isolation is ${JSON.stringify(o.isolation)}; use 'read_committed' or 'read_uncommitted'.`,
    );
  }
  for (const [key, min] of [
    ['autoCommitIntervalMs', 100],
    ['sessionTimeoutMs', 1000],
    ['heartbeatIntervalMs', 100],
    ['maxPollRecords', 1],
  ] as const) {
    const v = o[key];
    if (v !== undefined && (!Number.isInteger(v) || v < min)) {
      throw usage(`Consumer option ${key} is ${JSON.stringify(v)}; it must be an integer >= ${min}.`);
    }
  }
  if (
    o.heartbeatIntervalMs !== undefined &&
    o.sessionTimeoutMs !== undefined &&
    o.heartbeatIntervalMs >= o.sessionTimeoutMs
  ) {
    throw usage(
      'Consumer option heartbeatIntervalMs must be below sessionTimeoutMs (a third of it is usual).',
    );
  }
  for (const key of ['onAssign', 'onRevoke'] as const) {
    if (o[key] !== undefined && typeof o[key] !== 'function')
      throw usage(`Consumer option ${key} must be a function.`);
  }
}

function callbackToPromise<T>(fn: (cb: (err: Error | null, value?: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    fn((err, value) => (err ? reject(err) : resolve(value as T)));
  });
}

/**
 * A sluice consumer on `@platformatic/kafka`.
 *
 * The client's group membership (classic protocol: JoinGroup/SyncGroup/heartbeats) is used as is; everything the
 * client does not offer is done here:
 * - **revocation**: the client rejoins on its own when a heartbeat reports a rebalance and has no revoke callback.
 *   Its `protocolsMetadata` hook runs before every JoinGroup, still in the old generation: there the consumer stops
 *   returning records, runs auto-commit and `onRevoke` (whose commits are still accepted), then lets the join go on;
 * - **fetching, seek, per-partition pause**: the client's stream has one position per partition it cannot move and
 *   pauses only as a whole, so this consumer runs its own fetch loop on `Consumer.fetch` with its own positions and
 *   a bounded per-partition buffer; `poll()` drains the buffer;
 * - **commits**: OffsetCommit is sent here with the current generation, because the client's `commit()` rejoins the
 *   group on a generation error and then commits the stale offsets under the new generation;
 * - **committed offsets**: OffsetFetch with `require_stable` for read_committed consumers, so offsets committed by a
 *   just-finished transaction are seen once its markers are written.
 */
export class KafkaConsumer implements Consumer {
  readonly groupId: string;
  readonly #transport: KafkaTransport;
  readonly #options: ConsumerOptions;
  readonly #client: PlatformaticConsumer;
  /**
   * Connections for group-coordinator requests (offset commits and fetches), apart from the client's: a broker
   * answers one connection's requests in order, so a commit sent on the fetch connection waits behind the long-poll
   * fetch in flight (up to fetchMaxWaitMs, measured 250–500 ms per commit).
   */
  #coordinatorPool: ConnectionPool | undefined;
  readonly #readCommitted: boolean;
  readonly #maxPollRecords: number;
  readonly #sessionTimeoutMs: number;
  readonly #heartbeatIntervalMs: number;
  readonly #rebalanceTimeoutMs: number;

  #state: 'open' | 'closing' | 'closed' = 'open';
  #closing: Promise<void> | undefined;
  #started: Promise<void> | undefined;
  #joined = false;
  /** Partitions come from options.assign, not from the group. */
  #static = false;
  #parts = new Map<string, PartState>();
  /** Bumped on every assignment change; async work of an older assignment is discarded. */
  #assignmentEpoch = 0;
  readonly #everAssigned = new Set<string>();
  #revoking: Promise<void> | undefined;
  #fatal: SluiceError | undefined;
  #listenerErrors: unknown[] = [];
  #rotate = 0;
  #bufferedBytes = 0;
  /** Soft cap on the bytes one poll returns (at least one record is returned). */
  readonly #maxPollBytes: number;
  #waiters = new Set<() => void>();
  #fetchWake: (() => void) | undefined;
  #fetchLoop: Promise<void> | undefined;
  #commitChain: Promise<unknown> = Promise.resolve();
  #autoCommitTimer: NodeJS.Timeout | undefined;
  #rejoinAttempts = 0;

  constructor(transport: KafkaTransport, options: ConsumerOptions) {
    validateConsumerOptions(options);
    this.#transport = transport;
    this.#options = { ...options, topics: [...new Set(options.topics)] };
    this.groupId = options.groupId;
    this.#readCommitted = (options.isolation ?? 'read_committed') === 'read_committed';
    this.#maxPollRecords = options.maxPollRecords ?? 500;
    this.#maxPollBytes = options.maxPollBytes ?? 16 * 1_048_576;
    this.#sessionTimeoutMs = options.sessionTimeoutMs ?? 45_000;
    this.#heartbeatIntervalMs =
      options.heartbeatIntervalMs ?? Math.max(100, Math.min(3000, Math.floor(this.#sessionTimeoutMs / 3)));
    const cfg = transport.config;
    this.#rebalanceTimeoutMs = Math.max(this.#sessionTimeoutMs, cfg.requestTimeoutMs - 5000);
    this.#client = new PlatformaticConsumer({
      ...baseClientOptions(cfg, 'consumer'),
      groupId: options.groupId,
      autocommit: false,
      sessionTimeout: this.#sessionTimeoutMs,
      heartbeatInterval: this.#heartbeatIntervalMs,
      rebalanceTimeout: this.#rebalanceTimeoutMs,
      protocols: [{ name: 'roundrobin', version: 1 }],
      partitionAssigner: roundRobinAssigner,
      protocolsMetadata: () => this.#beforeJoin(),
      isolationLevel: this.#readCommitted ? READ_COMMITTED : READ_UNCOMMITTED,
      maxWaitTime: cfg.fetchMaxWaitMs,
      minBytes: 1,
      maxBytes: Math.max(cfg.fetchMaxBytesPerPartition, 32 * 1_048_576),
    });
    this.#client.on('consumer:group:join', (payload) => this.#onJoin(payload.assignments ?? []));
    // Emitted when a rejoin the client started on its own fails for good: join again ourselves.
    this.#client.on('error', (err: Error) => this.#onGroupError(err));
    if (options.autoCommitIntervalMs !== undefined) {
      this.#autoCommitTimer = setInterval(() => {
        if (this.#state === 'open' && (this.#joined || this.#static) && this.#revoking === undefined) {
          this.#commitDirty().catch(() => undefined);
        }
      }, options.autoCommitIntervalMs);
      this.#autoCommitTimer.unref();
    }
    this.#start().catch(() => undefined);
  }

  get memberId(): string {
    return this.#client.memberId ?? '';
  }

  // ---- membership -------------------------------------------------------------------------------------------------

  #start(): Promise<void> {
    if (this.#started === undefined) {
      this.#started = (async () => {
        const autoCreate = this.#options.autoCreateTopics === true;
        for (const topic of this.#options.topics) await this.#transport.partitionCount(topic, autoCreate);
        if (this.#state !== 'open') return;
        for (const topic of this.#options.topics) this.#client.topics.track(topic);
        if (this.#options.assign !== undefined) await this.#assignStatic(this.#options.assign);
        else await this.#join();
        this.#fetchLoop ??= this.#runFetchLoop();
      })();
      this.#started.catch((err: unknown) => {
        // let the next poll() report it and try again
        this.#started = undefined;
        if (this.#state === 'open') this.#fatal = this.#mapError(err, 'join the consumer group');
        this.#notify();
      });
    }
    return this.#started;
  }

  #joinOptions() {
    return {
      sessionTimeout: this.#sessionTimeoutMs,
      heartbeatInterval: this.#heartbeatIntervalMs,
      rebalanceTimeout: this.#rebalanceTimeoutMs,
      protocols: [{ name: 'roundrobin', version: 1 }],
      partitionAssigner: roundRobinAssigner,
      protocolsMetadata: () => this.#beforeJoin(),
    };
  }

  /** Static assignment (`assign`): no JoinGroup; commits go to the group with generation -1, like Kafka's assign(). */
  async #assignStatic(assign: TopicPartition[]): Promise<void> {
    const byTopic = new Map<string, number[]>();
    for (const tp of assign) {
      const subscribed = this.#options.topics.includes(tp.topic);
      const count = subscribed ? await this.#transport.partitionCount(tp.topic, false) : 0;
      checkStaticPartition(tp, this.#options.topics, count);
      getOrCreate(byTopic, tp.topic, () => []).push(tp.partition);
    }
    this.#static = true;
    this.#onJoin([...byTopic].map(([topic, partitions]) => ({ topic, partitions })));
  }

  /** Generation and member id to commit with: the group's, or -1 and '' for a static assignment. */
  #generation(): { generationId: number; memberId: string } {
    return this.#static
      ? { generationId: -1, memberId: '' }
      : { generationId: this.#client.generationId, memberId: this.#client.memberId ?? '' };
  }

  async #join(): Promise<void> {
    await this.#client.joinGroup(this.#joinOptions());
    this.#joined = true;
    this.#rejoinAttempts = 0;
  }

  #onGroupError(err: Error): void {
    if (this.#state !== 'open') return;
    this.#rejoinAttempts++;
    if (this.#rejoinAttempts > 5) {
      this.#fatal = this.#mapError(err, 'stay in the consumer group');
      this.#notify();
      return;
    }
    sleep(500 * this.#rejoinAttempts)
      .then(() => (this.#state === 'open' ? this.#join() : undefined))
      .catch((e: unknown) => this.#onGroupError(e instanceof Error ? e : new Error(String(e))));
  }

  /** The client's pre-JoinGroup hook: revoke everything (eager protocol) while the old generation still holds. */
  async #beforeJoin(): Promise<Buffer> {
    await this.#revokeAll();
    return EMPTY;
  }

  /** Stops returning records of every assigned partition, auto-commits, runs onRevoke, forgets the assignment. */
  #revokeAll(): Promise<void> {
    if (this.#revoking) return this.#revoking;
    if (this.#parts.size === 0) return Promise.resolve();
    this.#assignmentEpoch++;
    for (const st of this.#parts.values()) st.ready = false;
    this.#revoking = (async () => {
      const partitions = this.assignment();
      try {
        if (this.#options.autoCommitIntervalMs !== undefined) {
          await this.#commitDirty().catch((e: unknown) => this.#listenerErrors.push(e));
        }
        if (this.#options.onRevoke) {
          try {
            await this.#options.onRevoke(partitions);
          } catch (err) {
            this.#listenerErrors.push(err);
          }
        }
      } finally {
        this.#clearAssignment();
        this.#revoking = undefined;
        this.#notify();
      }
    })();
    return this.#revoking;
  }

  #clearAssignment(): void {
    for (const st of this.#parts.values()) this.#bufferedBytes -= st.bufferedBytes;
    this.#parts = new Map();
  }

  #onJoin(assignments: Array<{ topic: string; partitions: number[] }>): void {
    if (this.#state === 'closed') return;
    const epoch = ++this.#assignmentEpoch;
    // Eager protocol: the hook revoked everything before this join. Keep nothing from an older assignment.
    this.#clearAssignment();
    const fresh: PartState[] = [];
    for (const a of assignments) {
      for (const partition of [...a.partitions].sort((x, y) => x - y)) {
        const st: PartState = {
          topic: a.topic,
          partition,
          ready: false,
          position: 0,
          fetchOffset: 0,
          buffer: [],
          head: 0,
          bufferedBytes: 0,
          epoch: 0,
          paused: false,
          dirty: false,
          pendingSeek: undefined,
          inFlight: false,
        };
        this.#parts.set(tpKey(a.topic, partition), st);
        fresh.push(st);
      }
    }
    this.#notify();
    if (fresh.length > 0) {
      this.#initPartitions(epoch, fresh).catch((err: unknown) => {
        if (epoch === this.#assignmentEpoch && this.#state === 'open') {
          this.#fatal = this.#mapError(err, 'find the start positions of the assigned partitions');
          this.#notify();
        }
      });
    }
  }

  async #initPartitions(epoch: number, parts: PartState[]): Promise<void> {
    const positions = await this.#startPositions(parts);
    if (epoch !== this.#assignmentEpoch || this.#state === 'closed') return;
    const partitions: TopicPartition[] = [];
    for (const st of parts) {
      const key = tpKey(st.topic, st.partition);
      st.position = st.pendingSeek ?? positions.get(key)!;
      st.fetchOffset = st.position;
      st.dirty = st.pendingSeek !== undefined;
      st.pendingSeek = undefined;
      this.#everAssigned.add(key);
      partitions.push({ topic: st.topic, partition: st.partition });
    }
    if (this.#options.onAssign) {
      try {
        await this.#options.onAssign(partitions);
      } catch (err) {
        this.#listenerErrors.push(err);
      }
    }
    if (epoch !== this.#assignmentEpoch || this.#isClosed()) return;
    for (const st of parts) st.ready = true;
    this.#notify();
    this.#kickFetch();
  }

  /** Where each newly assigned partition starts (start option, committed offset, resetTo). */
  async #startPositions(parts: PartState[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const start = this.#options.start ?? 'committed';
    const explicit = new Map<string, number>();
    if (typeof start === 'object') {
      for (const o of start.offsets) explicit.set(tpKey(o.topic, o.partition), o.offset);
    }
    const needCommitted: PartState[] = [];
    const needEarliest: PartState[] = [];
    const needLatest: PartState[] = [];
    for (const st of parts) {
      const key = tpKey(st.topic, st.partition);
      const first = !this.#everAssigned.has(key);
      if (first && explicit.has(key)) out.set(key, explicit.get(key)!);
      else if (first && start === 'earliest') needEarliest.push(st);
      else if (first && start === 'latest') needLatest.push(st);
      else needCommitted.push(st);
    }
    if (needCommitted.length > 0) {
      const committed = await this.#fetchCommitted(needCommitted);
      for (let i = 0; i < needCommitted.length; i++) {
        const st = needCommitted[i]!;
        const c = committed[i];
        if (c !== undefined) out.set(tpKey(st.topic, st.partition), c);
        else if ((this.#options.resetTo ?? 'earliest') === 'latest') needLatest.push(st);
        else needEarliest.push(st);
      }
    }
    for (const [list, timestamp] of [
      [needEarliest, ListOffsetTimestamps.EARLIEST],
      [needLatest, ListOffsetTimestamps.LATEST],
    ] as const) {
      if (list.length === 0) continue;
      const offsets = await this.#listOffsets(list, timestamp);
      list.forEach((st, i) => {
        out.set(tpKey(st.topic, st.partition), offsets[i]!);
      });
    }
    return out;
  }

  async #listOffsets(parts: PartState[], timestamp: bigint): Promise<number[]> {
    const topics = [...new Set(parts.map((p) => p.topic))];
    const partitions: Record<string, number[]> = {};
    for (const p of parts) {
      partitions[p.topic] ??= [];
      partitions[p.topic]!.push(p.partition);
    }
    const result = await this.#client.listOffsets({
      topics,
      partitions,
      timestamp,
      isolationLevel: this.#readCommitted ? READ_COMMITTED : READ_UNCOMMITTED,
    });
    return parts.map((p) => {
      const v = result.get(p.topic)?.[p.partition];
      if (v === undefined || v < 0n) {
        throw new SluiceError(
          'SLUICE_TRANSPORT',
          `Kafka returned no ${timestamp === ListOffsetTimestamps.EARLIEST ? 'earliest' : 'latest'} offset for ${p.topic}/${p.partition}. Check that the partition has a leader (broker logs).`,
        );
      }
      return Number(v);
    });
  }

  // ---- group coordinator requests -----------------------------------------------------------------------------------

  async #coordinator(): Promise<{ id: number; connection: Connection }> {
    const id = await this.#client.findGroupCoordinator();
    const md: ClusterMetadata = await this.#client.metadata({ topics: [] });
    const broker = md.brokers.get(id);
    if (broker === undefined) {
      this.#client.clearMetadata();
      throw new SluiceError(
        'SLUICE_TRANSPORT',
        `The group coordinator (broker ${id}) is not in the cluster metadata yet; retry.`,
        {
          canRetry: true,
        },
      );
    }
    this.#coordinatorPool ??= new ConnectionPool(this.#client.clientId, {
      ...(this.#client as unknown as Record<symbol, object>)[kOptions],
    });
    const connection = await this.#coordinatorPool.get(broker);
    return { id, connection };
  }

  async #api<A extends unknown[], R>(name: string): Promise<API<A, R>> {
    return callbackToPromise<API<A, R>>((cb) => this.#client[kGetApi]<A, R>(name, cb));
  }

  /** Retries transient coordinator errors (moving, loading, not yet known) for up to the request timeout. */
  async #withCoordinatorRetry<T>(fn: () => Promise<T>, retryAlso: string[] = []): Promise<T> {
    const deadline = Date.now() + this.#transport.config.requestTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        const transient =
          (isSluiceError(err) && (err as SluiceError).canRetry) ||
          isNetworkError(err) ||
          kafkaErrorId(
            err,
            'NOT_COORDINATOR',
            'COORDINATOR_NOT_AVAILABLE',
            'COORDINATOR_LOAD_IN_PROGRESS',
            ...retryAlso,
          ) !== undefined;
        if (!transient || Date.now() > deadline || this.#state === 'closed') throw err;
        await sleep(Math.min(1000, 50 * 2 ** attempt));
      }
    }
  }

  /** OffsetFetch for the group; `require_stable` for read_committed so pending transactional commits are awaited. */
  async #fetchCommitted(partitions: TopicPartition[]): Promise<Array<number | undefined>> {
    const byTopic = new Map<string, number[]>();
    for (const p of partitions) {
      const list = getOrCreate(byTopic, p.topic, () => []);
      if (!list.includes(p.partition)) list.push(p.partition);
    }
    const response = await this.#withCoordinatorRetry(async () => {
      const { connection } = await this.#coordinator();
      const api = await this.#api<unknown[], unknown>('OffsetFetch');
      return (await api.async(
        connection,
        [
          {
            groupId: this.groupId,
            memberId: null,
            memberEpoch: -1,
            topics: [...byTopic].map(([name, partitionIndexes]) => ({ name, partitionIndexes })),
          },
        ],
        this.#readCommitted,
      )) as {
        groups?: Array<{
          topics: Array<{
            name: string;
            partitions: Array<{ partitionIndex: number; committedOffset: bigint }>;
          }>;
        }>;
        topics?: Array<{
          name: string;
          partitions: Array<{ partitionIndex: number; committedOffset: bigint }>;
        }>;
      };
    }, ['UNSTABLE_OFFSET_COMMIT']);
    const found = new Map<string, number>();
    const topics = response.groups?.[0]?.topics ?? response.topics ?? [];
    for (const t of topics) {
      for (const p of t.partitions) {
        if (p.committedOffset >= 0n) found.set(tpKey(t.name, p.partitionIndex), Number(p.committedOffset));
      }
    }
    return partitions.map((p) => found.get(tpKey(p.topic, p.partition)));
  }

  /** OffsetCommit in the current generation. A stale generation is SLUICE_REBALANCE, never a silent rejoin. */
  async #offsetCommit(offsets: TopicPartitionOffset[]): Promise<void> {
    if (offsets.length === 0) return;
    const byTopic = new Map<
      string,
      Array<{ partitionIndex: number; committedOffset: bigint; committedLeaderEpoch: number }>
    >();
    for (const o of offsets) {
      getOrCreate(byTopic, o.topic, () => []).push({
        partitionIndex: o.partition,
        committedOffset: BigInt(o.offset),
        committedLeaderEpoch: -1,
      });
    }
    await this.#withCoordinatorRetry(async () => {
      const { connection } = await this.#coordinator();
      const api = await this.#api<unknown[], unknown>('OffsetCommit');
      const { generationId, memberId } = this.#generation();
      await api.async(
        connection,
        this.groupId,
        generationId,
        memberId,
        null,
        [...byTopic].map(([name, partitions]) => ({ name, partitions })),
      );
    });
  }

  // ---- fetching ----------------------------------------------------------------------------------------------------

  #kickFetch(): void {
    const wake = this.#fetchWake;
    this.#fetchWake = undefined;
    wake?.();
  }

  #notify(): void {
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const w of waiters) w();
  }

  /** Waits for any change (records, assignment, close) or `ms`. */
  #waitForChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#waiters.add(done);
    });
  }

  #fetchable(st: PartState): boolean {
    const cfg = this.#transport.config;
    return (
      st.ready &&
      !st.paused &&
      !st.inFlight &&
      // up to two fetches' worth buffered, so the next fetch overlaps with the application draining the buffer
      st.bufferedBytes < 2 * cfg.fetchMaxBytesPerPartition &&
      this.#bufferedBytes < cfg.consumerBufferBytes
    );
  }

  async #runFetchLoop(): Promise<void> {
    const inFlightNodes = new Set<number>();
    while (this.#state === 'open') {
      const wanted = [...this.#parts.values()].filter((st) => this.#fetchable(st));
      if (wanted.length > 0) {
        let metadata: ClusterMetadata | undefined;
        try {
          metadata = await this.#client.metadata({ topics: this.#client.topics.current });
        } catch (err) {
          this.#fetchError(err);
          await sleep(250);
          continue;
        }
        const byNode = new Map<number, PartState[]>();
        for (const st of wanted) {
          const leader = metadata.topics.get(st.topic)?.partitions[st.partition]?.leader ?? -1;
          if (leader < 0 || inFlightNodes.has(leader)) continue;
          getOrCreate(byNode, leader, () => []).push(st);
        }
        for (const [node, parts] of byNode) {
          inFlightNodes.add(node);
          this.#fetchFrom(node, parts, metadata)
            .catch((err: unknown) => this.#fetchError(err))
            .finally(() => {
              inFlightNodes.delete(node);
              this.#kickFetch();
            });
        }
      }
      if (this.#state !== 'open') break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.#fetchWake = undefined;
          resolve();
        }, 1000);
        timer.unref();
        this.#fetchWake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  #fetchError(err: unknown): void {
    if (this.#state !== 'open') return;
    if (
      kafkaErrorId(err, 'UNKNOWN_TOPIC_OR_PARTITION', 'UNKNOWN_TOPIC_ID') ||
      (err instanceof Error && err.message.startsWith('Unknown topic'))
    ) {
      this.#fatal = this.#mapError(err, 'fetch records');
      this.#notify();
    }
    // anything else (leader moved, connection dropped) is retried by the loop
  }

  async #fetchFrom(node: number, parts: PartState[], metadata: ClusterMetadata): Promise<void> {
    const cfg = this.#transport.config;
    const requested = parts.map((st) => ({ st, epoch: st.epoch, offset: st.fetchOffset }));
    const byKey = new Map(requested.map((r) => [tpKey(r.st.topic, r.st.partition), r]));
    const topicIds = new Map<string, string>();
    const topics = new Map<string, FetchRequestTopic>();
    for (const { st, offset } of requested) {
      st.inFlight = true;
      const id = metadata.topics.get(st.topic)!.id;
      topicIds.set(id, st.topic);
      getOrCreate(topics, st.topic, () => ({ topicId: id, partitions: [] })).partitions.push({
        partition: st.partition,
        fetchOffset: BigInt(offset),
        partitionMaxBytes: cfg.fetchMaxBytesPerPartition,
        currentLeaderEpoch: -1,
        lastFetchedEpoch: -1,
      });
    }
    let response: FetchResponse | undefined;
    let failure: unknown;
    try {
      response = await this.#client.fetch({
        node,
        topics: [...topics.values()],
        maxWaitTime:
          this.#bufferedBytes > 0 ? Math.min(DRAINING_FETCH_WAIT_MS, cfg.fetchMaxWaitMs) : cfg.fetchMaxWaitMs,
        minBytes: 1,
        maxBytes: Math.max(cfg.fetchMaxBytesPerPartition, 32 * 1_048_576),
        isolationLevel: this.#readCommitted ? READ_COMMITTED : READ_UNCOMMITTED,
      });
    } catch (err) {
      failure = err;
      response = (err as { response?: FetchResponse }).response;
    } finally {
      for (const { st } of requested) st.inFlight = false;
    }
    if (this.#state !== 'open') return;
    const resets: PartState[] = [];
    let delivered = false;
    for (const t of response?.responses ?? []) {
      const topic = topicIds.get(t.topicId) ?? t.topicId;
      for (const p of t.partitions) {
        const key = tpKey(topic, p.partitionIndex);
        const req = byKey.get(key);
        const st = this.#parts.get(key);
        // stale: reassigned, seeked or reset since the request left
        if (!req || st !== req.st || st.epoch !== req.epoch || st.fetchOffset !== req.offset || !st.ready)
          continue;
        if (p.errorCode === OFFSET_OUT_OF_RANGE) {
          resets.push(st);
          continue;
        }
        if (p.errorCode !== 0) continue; // retried on the next round (metadata refresh happens in the client)
        const decoded = decodePartition(topic, p.partitionIndex, p, req.offset, this.#readCommitted);
        if (decoded.records.length > 0) {
          st.buffer.push(...decoded.records);
          st.bufferedBytes += decoded.bytes;
          this.#bufferedBytes += decoded.bytes;
          delivered = true;
        }
        if (decoded.nextOffset !== undefined && decoded.nextOffset > st.fetchOffset) {
          st.fetchOffset = decoded.nextOffset;
          delivered = true;
        }
      }
    }
    if (resets.length > 0) await this.#resetOffsets(resets).catch((err: unknown) => this.#fetchError(err));
    if (delivered) this.#notify();
    if (failure !== undefined) {
      // leader moved, topic deleted, connection lost…: report what must be reported, refresh metadata, back off
      this.#fetchError(failure);
      this.#client.clearMetadata();
      await sleep(250);
    }
  }

  /** OFFSET_OUT_OF_RANGE (retention deleted the position, or an explicit offset past the end): apply resetTo. */
  async #resetOffsets(parts: PartState[]): Promise<void> {
    const epochs = parts.map((st) => st.epoch);
    const timestamp =
      (this.#options.resetTo ?? 'earliest') === 'latest'
        ? ListOffsetTimestamps.LATEST
        : ListOffsetTimestamps.EARLIEST;
    const offsets = await this.#listOffsets(parts, timestamp);
    parts.forEach((st, i) => {
      if (this.#parts.get(tpKey(st.topic, st.partition)) !== st || st.epoch !== epochs[i]) return;
      this.#dropBuffer(st);
      st.epoch++;
      st.position = offsets[i]!;
      st.fetchOffset = offsets[i]!;
      st.dirty = true;
    });
    this.#kickFetch();
  }

  #dropBuffer(st: PartState): void {
    this.#bufferedBytes -= st.bufferedBytes;
    st.bufferedBytes = 0;
    st.buffer = [];
    st.head = 0;
  }

  /** Takes up to `max` buffered records, rotating over partitions, and advances positions. */
  #take(max: number): ConsumedRecord[] {
    const out: ConsumedRecord[] = [];
    const parts = [...this.#parts.values()];
    const n = parts.length;
    if (n === 0) return out;
    const first = this.#rotate++ % n;
    let freed = false;
    let total = 0;
    let full = false;
    for (let i = 0; i < n && out.length < max && !full; i++) {
      const st = parts[(first + i) % n]!;
      if (!st.ready || st.paused) continue;
      const available = st.buffer.length - st.head;
      if (available > 0) {
        const count = Math.min(available, max - out.length);
        let bytes = 0;
        let taken = 0;
        while (taken < count) {
          const r = st.buffer[st.head + taken]!;
          const rb = recordBytes(r);
          if (out.length > 0 && total + rb > this.#maxPollBytes) {
            full = true;
            break;
          }
          total += rb;
          bytes += rb;
          out.push(r);
          // drop the reference: a taken chunk of 512 KiB must not stay alive until the buffer is emptied
          st.buffer[st.head + taken] = undefined;
          taken++;
        }
        if (taken === 0) break;
        st.head += taken;
        st.position = out[out.length - 1]!.offset + 1;
        st.dirty = true;
        st.bufferedBytes -= bytes;
        this.#bufferedBytes -= bytes;
        if (st.head === st.buffer.length) {
          st.buffer = [];
          st.head = 0;
        } else if (st.head > 1024 && st.head * 2 > st.buffer.length) {
          st.buffer = st.buffer.slice(st.head);
          st.head = 0;
        }
        freed = true;
      }
      // Everything below fetchOffset was returned or skipped (transaction markers, aborted records): move past it.
      if (st.buffer.length === st.head && st.fetchOffset > st.position && !st.inFlight) {
        st.position = st.fetchOffset;
        st.dirty = true;
      }
    }
    if (freed) this.#kickFetch();
    return out;
  }

  // ---- the Consumer contract ----------------------------------------------------------------------------------------

  #checkOpen(): void {
    if (this.#state !== 'open') throw closedError('consumer');
  }

  #isClosed(): boolean {
    return this.#state === 'closed';
  }

  #mapError(err: unknown, action: string): SluiceError {
    return toSluiceError(err, `${action} (group "${this.groupId}")`, this.#transport.config.brokers);
  }

  #throwPending(): void {
    if (this.#fatal) {
      const f = this.#fatal;
      this.#fatal = undefined;
      throw f;
    }
    if (this.#listenerErrors.length > 0) {
      const err = this.#listenerErrors.shift();
      if (isSluiceError(err)) throw err;
      throw new SluiceError(
        'SLUICE_TRANSPORT',
        `An onAssign/onRevoke callback of group "${this.groupId}" failed: ${flattenMessages(err)}. Fix the callback; the assignment went ahead regardless.`,
        { cause: err },
      );
    }
  }

  async poll(options: PollOptions = {}): Promise<ConsumedRecord[]> {
    this.#checkOpen();
    const max = options.maxRecords ?? this.#maxPollRecords;
    const timeoutMs = options.timeoutMs ?? 1000;
    if (!Number.isInteger(max) || max < 1)
      throw usage(`poll maxRecords is ${max}; it must be an integer >= 1.`);
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0)
      throw usage(`poll timeoutMs is ${timeoutMs}; it must be >= 0.`);
    this.#start().catch(() => undefined);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.#state !== 'open') return [];
      this.#throwPending();
      const out = this.#take(max);
      if (out.length > 0) return out;
      const left = deadline - Date.now();
      if (left <= 0) return [];
      await this.#waitForChange(left);
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<ConsumedRecord> {
    return {
      next: async (): Promise<IteratorResult<ConsumedRecord>> => {
        while (this.#state === 'open') {
          // one record at a time: a `break` leaves the rest unreturned, positions untouched
          const [r] = await this.poll({ maxRecords: 1, timeoutMs: 1000 });
          if (r !== undefined) return { value: r, done: false };
        }
        return { value: undefined, done: true };
      },
      return: async (): Promise<IteratorResult<ConsumedRecord>> => ({ value: undefined, done: true }),
    };
  }

  async commit(offsets?: TopicPartitionOffset[]): Promise<void> {
    if (this.#state === 'closed') throw closedError('consumer');
    if (offsets !== undefined) {
      if (!Array.isArray(offsets))
        throw usage('commit(offsets) takes an array of { topic, partition, offset }.');
      for (const [i, o] of offsets.entries()) {
        if (
          typeof o?.topic !== 'string' ||
          !Number.isInteger(o.partition) ||
          o.partition < 0 ||
          !Number.isInteger(o.offset) ||
          o.offset < 0
        ) {
          throw usage(
            `commit offset ${i} is ${JSON.stringify(o)}; give { topic, partition, offset } with the next offset to read (record.offset + 1).`,
          );
        }
      }
    }
    if (this.#state === 'open') await this.#start();
    const run = async (): Promise<void> => {
      if (offsets === undefined) {
        await this.#commitDirty();
        return;
      }
      try {
        await this.#offsetCommit(offsets);
      } catch (err) {
        throw this.#mapError(err, 'commit offsets');
      }
    };
    const result = this.#commitChain.then(run, run);
    this.#commitChain = result.catch(() => undefined);
    return result;
  }

  /** Commits the position of every partition whose position moved since its last commit. */
  async #commitDirty(): Promise<void> {
    const dirty = [...this.#parts.values()].filter((st) => st.dirty);
    if (dirty.length === 0) return;
    const offsets = dirty.map((st) => ({ topic: st.topic, partition: st.partition, offset: st.position }));
    for (const st of dirty) st.dirty = false;
    try {
      await this.#offsetCommit(offsets);
    } catch (err) {
      for (const st of dirty) st.dirty = true;
      throw this.#mapError(err, 'commit offsets');
    }
  }

  async committed(partitions: TopicPartition[]): Promise<Array<number | undefined>> {
    this.#checkOpen();
    if (!Array.isArray(partitions))
      throw usage('committed(partitions) takes an array of { topic, partition }.');
    if (partitions.length === 0) return [];
    try {
      return await this.#fetchCommitted(partitions);
    } catch (err) {
      throw this.#mapError(err, 'read committed offsets');
    }
  }

  #requireAssigned(tp: TopicPartition, action: string): PartState {
    const st = this.#parts.get(tpKey(tp?.topic, tp?.partition));
    if (st === undefined) {
      throw new SluiceError(
        'SLUICE_NOT_ASSIGNED',
        `Cannot ${action} ${tp?.topic}/${tp?.partition}: it is not assigned to this member of group "${this.groupId}" (assigned: ${
          this.assignment()
            .map((p) => `${p.topic}/${p.partition}`)
            .join(', ') || 'none'
        }). Wait for the assignment (waitForAssignment, onAssign) and only use partitions in assignment().`,
        { details: { topic: tp?.topic, partition: tp?.partition } },
      );
    }
    return st;
  }

  pause(partitions: TopicPartition[]): void {
    this.#checkOpen();
    const states = partitions.map((tp) => this.#requireAssigned(tp, 'pause'));
    for (const st of states) st.paused = true;
  }

  resume(partitions: TopicPartition[]): void {
    this.#checkOpen();
    const states = partitions.map((tp) => this.#requireAssigned(tp, 'resume'));
    for (const st of states) st.paused = false;
    this.#notify();
    this.#kickFetch();
  }

  paused(): TopicPartition[] {
    return [...this.#parts.values()]
      .filter((st) => st.paused)
      .map((st) => ({ topic: st.topic, partition: st.partition }));
  }

  assignment(): TopicPartition[] {
    return [...this.#parts.values()].map((st) => ({ topic: st.topic, partition: st.partition }));
  }

  async waitForAssignment(timeoutMs = 30_000): Promise<TopicPartition[]> {
    this.#checkOpen();
    this.#start().catch(() => undefined);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.#state !== 'open') return [];
      this.#throwPending();
      const parts = [...this.#parts.values()];
      if (parts.length > 0 && parts.every((st) => st.ready)) return this.assignment();
      const left = deadline - Date.now();
      if (left <= 0) return this.assignment();
      await this.#waitForChange(left);
    }
  }

  seek(position: TopicPartitionOffset): void {
    this.#checkOpen();
    if (!Number.isInteger(position?.offset) || position.offset < 0) {
      throw usage(`seek offset is ${JSON.stringify(position?.offset)}; it must be an integer >= 0.`);
    }
    const st = this.#requireAssigned(position, 'seek');
    if (!st.ready) {
      st.pendingSeek = position.offset;
      return;
    }
    this.#dropBuffer(st);
    st.epoch++;
    st.position = position.offset;
    st.fetchOffset = position.offset;
    st.dirty = true;
    this.#kickFetch();
  }

  /**
   * For `sendAndCommit`: the group identity to commit under, after checking that this member still owns every
   * partition in `offsets` (SLUICE_REBALANCE otherwise).
   */
  async transactionGroup(offsets: TopicPartitionOffset[]): Promise<TransactionGroup> {
    this.#checkOpen();
    await this.#start();
    const notOwned = offsets.filter((o) => !this.#parts.has(tpKey(o.topic, o.partition)));
    if (notOwned.length > 0) {
      throw new SluiceError(
        'SLUICE_REBALANCE',
        `This consumer (group "${this.groupId}") does not own ${notOwned.map((o) => `${o.topic}/${o.partition}`).join(', ')}, so it cannot commit offsets for it in a transaction; nothing was sent. Commit only offsets of partitions in consumer.assignment(); after a rebalance the new owner continues from the last commit.`,
        { canRetry: false },
      );
    }
    const coordinatorId = await this.#client.findGroupCoordinator();
    return { groupId: this.groupId, ...this.#generation(), coordinatorId };
  }

  async close(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#state = 'closing';
    this.#notify();
    this.#kickFetch();
    if (this.#autoCommitTimer) clearInterval(this.#autoCommitTimer);
    this.#closing = (async () => {
      const errors: unknown[] = [];
      try {
        if (this.#joined || this.#static) {
          if (this.#revoking) await this.#revoking;
          // partitions still assigned: the last chance to commit (auto-commit, onRevoke)
          await this.#revokeAll();
          errors.push(...this.#listenerErrors);
          this.#listenerErrors = [];
        }
        await this.#commitChain;
      } finally {
        this.#state = 'closed';
        this.#clearAssignment();
        this.#notify();
        this.#kickFetch();
        if (!this.#static) {
          // Leave first, joined or not: it ends the client's group membership, which close() alone does not. A
          // join still in flight (a consumer closed right after it was made, or a rejoin a rebalance started) would
          // otherwise complete after close() and, in @platformatic/kafka 2.12, heartbeat on the closed client every
          // interval forever, keeping the process alive; after leaving, the join and any heartbeat stop on their
          // own. close() then only closes connections.
          await new Promise<void>((resolve) => this.#client.leaveGroup(true, () => resolve()));
        }
        await this.#client.close(true).catch((e: unknown) => {
          if (this.#joined) errors.push(e);
        });
        await this.#coordinatorPool?.close().catch(() => undefined);
        await this.#fetchLoop?.catch(() => undefined);
        this.#transport.forget(this);
      }
      if (errors.length > 0) throw this.#mapError(errors[0], 'close the consumer');
    })();
    return this.#closing;
  }
}
