/**
 * The transport contract. Everything above the transports (files, processors, channels, batching, KCL) talks to
 * a broker only through these interfaces, so every higher layer runs on every transport.
 *
 * The model is Kafka's, because Kafka is where users go when they outgrow one machine:
 * - a topic has N partitions; each partition is an ordered log whose records have consecutive offsets from 0;
 * - producers append records; a record goes to an explicit partition, to `murmur2(key) % N` exactly as Kafka's
 *   Java client computes it, or round-robin when it has no key;
 * - consumers join a group; the group's live members split the partitions of the subscribed topics between them;
 *   the group stores one committed offset per partition: the offset of the *next* record to read;
 * - delivery is at-least-once by default: a record is re-delivered after a crash unless its offset was committed.
 *   Transports with `capabilities.atomicProduceCommit` can also commit consumed offsets in the same atomic step
 *   as the records produced from them (consume-transform-produce exactly once).
 *
 * Offsets are JavaScript numbers (safe up to 2^53, far beyond any real partition).
 */

export interface TopicPartition {
  topic: string;
  partition: number;
}

export interface TopicPartitionOffset extends TopicPartition {
  /** The offset of the next record to read (Kafka's convention for commits and positions). */
  offset: number;
}

export type HeaderValue = Buffer | string;

export interface ProduceRecord {
  topic: string;
  /** Records with equal keys land on the same partition (murmur2, as Kafka's Java client). */
  key?: Buffer | string | null;
  /** `null` is a tombstone. */
  value: Buffer | string | null;
  headers?: Record<string, HeaderValue>;
  /** An explicit partition overrides the partitioner. */
  partition?: number;
  /** Milliseconds since the epoch; defaults to the time of the send. */
  timestamp?: number;
}

export interface RecordMetadata extends TopicPartitionOffset {
  timestamp: number;
}

export interface ConsumedRecord {
  topic: string;
  partition: number;
  offset: number;
  timestamp: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, Buffer>;
}

/**
 * How a producer picks a partition for a record that names none:
 * - `murmur2` (default): keyed records by Kafka's Java-client hash; keyless records round-robin;
 * - `round-robin`: every record round-robin, key or not;
 * - a function of the key and the partition count.
 */
export type Partitioner =
  | 'murmur2'
  | 'round-robin'
  | ((key: Buffer | null, partitionCount: number) => number);

export interface ProducerOptions {
  partitioner?: Partitioner;
  /** Create a topic that does not exist yet (with the transport's default partition count) instead of failing. */
  autoCreateTopics?: boolean;
  /** Idempotent delivery where the transport has it (on by default on Kafka). */
  idempotent?: boolean;
  /**
   * Needed for `sendAndCommit` on transports that implement it with broker transactions (Kafka): a stable id per
   * logical producer, so a restarted instance fences its zombie predecessor.
   */
  transactionalId?: string;
}

export interface Producer {
  /**
   * Appends the records and resolves once every one is acknowledged, with one metadata entry per record, in the
   * order given. Rejects (SLUICE_DELIVERY_FAILED, SLUICE_TOPIC_UNKNOWN …) when any record was not acknowledged.
   */
  send(records: ProduceRecord | ProduceRecord[]): Promise<RecordMetadata[]>;
  /**
   * Atomically appends `records` and commits `offsets` for the consumer's group: either both become visible to
   * `read_committed` readers, or neither does. Only where `capabilities.atomicProduceCommit` is true; elsewhere it
   * throws SLUICE_UNSUPPORTED. The consumer must still own the partitions (SLUICE_REBALANCE otherwise).
   */
  sendAndCommit(
    records: ProduceRecord[],
    consumer: Consumer,
    offsets: TopicPartitionOffset[],
  ): Promise<RecordMetadata[]>;
  /** Waits for everything sent so far. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Where a consumer starts reading a partition it is assigned for the first time:
 * - `committed` (default): after the group's committed offset, or at `resetTo` when there is none;
 * - `earliest` / `latest`: ignore commits and start at the beginning / the end of the partition;
 * - explicit offsets for some partitions; the others behave as `committed`.
 */
export type StartPosition = 'committed' | 'earliest' | 'latest' | { offsets: TopicPartitionOffset[] };

export interface ConsumerOptions {
  groupId: string;
  topics: string[];
  /**
   * Static assignment (Kafka's `assign()`): read exactly these partitions of `topics`, without joining the group.
   * No rebalancing: other members and static consumers of the same group are ignored, `onAssign` runs once for
   * these partitions and `onRevoke` at close. Offsets are still committed to and loaded from `groupId`.
   */
  assign?: TopicPartition[];
  start?: StartPosition;
  /** With `start: 'committed'` and no committed offset: where to begin. Default `earliest`. */
  resetTo?: 'earliest' | 'latest';
  /**
   * Commit the position of everything returned by earlier polls every this many milliseconds (Kafka's
   * `enable.auto.commit`). Default: off; call `commit()` yourself after processing (at-least-once).
   */
  autoCommitIntervalMs?: number;
  /** A member that has not been heard from for this long is considered dead and loses its partitions. */
  sessionTimeoutMs?: number;
  /** How often membership is renewed. Default a third of the session timeout, at most 3 s. */
  heartbeatIntervalMs?: number;
  /** Upper bound on records returned by one `poll()`. Default 500. */
  maxPollRecords?: number;
  /**
   * Soft upper bound on the bytes (keys + values) one `poll()` returns and the consumer buffers ahead; at least
   * one record is always returned. Keeps memory flat when records are large (file chunks). Default 16 MiB.
   */
  maxPollBytes?: number;
  /**
   * Where the transport may take the buffers of record values (the embedded broker does, for values it reads from
   * its segment files). A caller that passes one gives each value back to it (`give`) once nothing refers to it
   * any more, so the memory is reused instead of garbage-collected; values the pool did not hand out are ignored
   * by its `give`. Transports with no use for it ignore it.
   */
  valueBuffers?: { take(size: number): Buffer };
  /** Default `read_committed`: records of aborted or open transactions are never returned. */
  isolation?: 'read_committed' | 'read_uncommitted';
  /** Called before records of newly assigned partitions are returned. */
  onAssign?: (partitions: TopicPartition[]) => void | Promise<void>;
  /** Called before partitions are handed to another member: the last chance to commit their offsets. */
  onRevoke?: (partitions: TopicPartition[]) => void | Promise<void>;
  /** Create subscribed topics that do not exist yet instead of failing. */
  autoCreateTopics?: boolean;
}

export interface PollOptions {
  /** Default `maxPollRecords`. */
  maxRecords?: number;
  /** Resolve with what is there (possibly nothing) after this long. Default 1000 ms. */
  timeoutMs?: number;
}

export interface Consumer extends AsyncIterable<ConsumedRecord> {
  readonly groupId: string;
  readonly memberId: string;
  /**
   * The batch API: the next records of the assigned, unpaused partitions, in offset order per partition.
   * Resolves with an empty array when nothing arrives within the timeout, and when the consumer is closed
   * while polling.
   */
  poll(options?: PollOptions): Promise<ConsumedRecord[]>;
  /**
   * Commits offsets for the group. Without an argument: the position after every record returned so far.
   * Offsets are next-to-read offsets (`record.offset + 1`).
   */
  commit(offsets?: TopicPartitionOffset[]): Promise<void>;
  /** The group's committed offsets for the given partitions (undefined where none). */
  committed(partitions: TopicPartition[]): Promise<Array<number | undefined>>;
  /** Stops returning records of these partitions until resumed; the position does not move. */
  pause(partitions: TopicPartition[]): void;
  resume(partitions: TopicPartition[]): void;
  paused(): TopicPartition[];
  /** The partitions currently assigned to this member. */
  assignment(): TopicPartition[];
  /** Resolves once this member has been assigned at least one partition, or after `timeoutMs`. */
  waitForAssignment(timeoutMs?: number): Promise<TopicPartition[]>;
  /** Moves the position of an assigned partition. */
  seek(position: TopicPartitionOffset): void;
  /**
   * Leaves the group and releases its partitions (after `onRevoke`). A pending poll resolves with no records;
   * later calls throw SLUICE_CLOSED; the async iterator ends. Commits nothing implicitly unless auto-commit is on.
   */
  close(): Promise<void>;
}

export interface TopicSpec {
  name: string;
  /** Default: the transport's default (1 on the embedded transport). */
  partitions?: number;
  /** Delete records older than this (ms). */
  retentionMs?: number;
  /** Keep at most about this many bytes per partition, deleting the oldest records first. */
  retentionBytes?: number;
}

export interface PartitionDescription {
  partition: number;
  /** Offset of the first record still stored. */
  startOffset: number;
  /** Offset the next record will get (the "high watermark"). */
  endOffset: number;
}

export interface TopicDescription {
  name: string;
  partitions: PartitionDescription[];
  retentionMs?: number;
  retentionBytes?: number;
}

export interface GroupOffset extends TopicPartition {
  committed: number | undefined;
  endOffset: number;
  /** `endOffset - committed` (or the whole partition when nothing is committed). */
  lag: number;
}

export interface GroupMember {
  memberId: string;
  assignment: TopicPartition[];
}

export interface GroupDescription {
  groupId: string;
  members: GroupMember[];
  offsets: GroupOffset[];
}

export interface TransportCapabilities {
  /** `Producer.sendAndCommit` is atomic. */
  atomicProduceCommit: boolean;
  /** Retention by time/size is enforced by the transport. */
  retention: boolean;
  /** Short statement of delivery semantics, for docs and `--help`. */
  delivery: string;
}

export interface Transport {
  /** `embedded`, `kafka`, … */
  readonly kind: string;
  readonly capabilities: TransportCapabilities;

  createTopic(spec: TopicSpec, options?: { ifNotExists?: boolean }): Promise<void>;
  deleteTopic(name: string): Promise<void>;
  listTopics(): Promise<string[]>;
  /** Throws SLUICE_TOPIC_UNKNOWN for a missing topic. */
  describeTopic(name: string): Promise<TopicDescription>;
  listGroups(): Promise<string[]>;
  describeGroup(groupId: string): Promise<GroupDescription>;

  producer(options?: ProducerOptions): Producer;
  consumer(options: ConsumerOptions): Consumer;

  /** Closes every producer and consumer made by this transport, then the transport itself. */
  close(): Promise<void>;
}
