/**
 * The technology-independent half of pypz-compatible channels: `ChannelBase`, `ChannelReader` and `ChannelWriter`.
 *
 * A technology (Kafka-like log, RabbitMQ queues, memory) implements the protected steps (`createResources`,
 * `openChannel`, `readRecords`, `sendStatusMessage`, …). Callers use the `invoke*` wrappers, which keep the state
 * flags, send the status messages, run the heartbeat and count records, exactly as pypz's `ChannelBase` does:
 * - every lifecycle step returns `true` (done) or `false` (not yet: call again); `driveStep` repeats it;
 * - open → `Opened` + one status update + heartbeat; start → `Started`; stop → `Stopped` (a writer flushes its data
 *   first); close → heartbeat stopped, `Stopped` if still started, `Closed`;
 * - a heartbeat sends `HealthCheck` with the health payload every 2 s, then reads the counterparts' statuses;
 * - readers keep pypz's offsets: read offset starts at -9999, is loaded once, advances by the records read;
 *   `invokeCommitOffset(rel)` commits `rel + initial` (the crash-restart compensation).
 */
import type { Logger } from 'pino';
import { SluiceError } from '../errors.ts';
import { createLogger } from '../runtime/logger.ts';
import { type RecordCodec, type RecordFormat, recordCodec } from './codec.ts';
import {
  ChannelStatus,
  type ChannelStatusMessage,
  ChannelStatusMonitor,
  encodeStatusMessage,
  HEALTH_CHECK_INTERVAL_MS,
  HEARTBEAT_ERROR_BUDGET_MS,
  parseStatusMessage,
  type StatusPayload,
  uniqueChannelId,
} from './status.ts';

/** pypz `NotInitialized`: the read offset before it was loaded. */
export const OFFSET_NOT_INITIALIZED = -9999;
/** pypz keeps 10 metric entries but pops at 10 after appending, so averages cover the last 9 I/O cycles. */
export const METRICS_WINDOW = 9;

export interface ChannelOptions {
  /** The channel: the full name of the reading input port (the group principal's port when replicated). */
  channelName: string;
  /** The full name of the port this end belongs to (the writer's output port, the reader's input port). */
  contextName: string;
  /** The operator group (the principal's full name) when the operator is replicated; null otherwise. */
  groupName?: string | null;
  /** 0 = principal. */
  groupIndex?: number;
  groupSize?: number;
  /** Record encoding: 'bytes' (default), 'json', or { avroSchema } (pypz's `schema`). */
  format?: RecordFormat;
  /** Adds the cycle averages to the health payload (pypz `metricsEnabled`). */
  metricsEnabled?: boolean;
  /** Monitoring mode: no status messages are sent and readers take no data. */
  silent?: boolean;
  /** HealthCheck interval. Default 2000 ms (pypz). */
  heartbeatIntervalMs?: number;
  logger?: Logger;
  /** Clock (epoch ms); tests replace it. */
  now?: () => number;
}

export interface ReaderOptions extends ChannelOptions {
  /** Broadcast (pypz `group_mode=True`): every replica gets every record. Default false: replicas share records. */
  groupMode?: boolean;
  /** How many writers to wait for and to see finish: the sum of the connected outputs' group sizes. Default 1. */
  expectedWriterCount?: number;
}

type Step = () => Promise<boolean> | boolean;

function checkBool(what: string, v: unknown): boolean {
  if (typeof v !== 'boolean') {
    throw new SluiceError(
      'SLUICE_CHANNEL_STATE',
      `Channel step ${what} returned ${JSON.stringify(v)}; a lifecycle step must return true (done) or false (call again).`,
    );
  }
  return v;
}

/**
 * Runs a lifecycle step until it returns true (pypz's operator states repeat each step the same way).
 * `timeoutMs` 0 or absent waits forever (pypz `portOpenTimeoutMs` default).
 */
export async function driveStep(
  what: string,
  step: Step,
  options: { timeoutMs?: number; intervalMs?: number; signal?: AbortSignal } = {},
): Promise<void> {
  const started = Date.now();
  const interval = options.intervalMs ?? 100;
  for (;;) {
    if (checkBool(what, await step())) return;
    if (options.signal?.aborted) {
      throw new SluiceError('SLUICE_CLOSED', `Stopped while waiting for ${what}.`);
    }
    if (
      options.timeoutMs !== undefined &&
      options.timeoutMs > 0 &&
      Date.now() - started >= options.timeoutMs
    ) {
      throw new SluiceError(
        'SLUICE_TIMEOUT',
        `${what} did not finish within ${options.timeoutMs} ms. Check that the other side of the channel is running ` +
          '(for a writer: the reader creates the topics or queues), or raise the timeout (portOpenTimeoutMs; 0 waits forever).',
      );
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

interface MetricEntry {
  elapsedMs: number;
  records: number;
}

/** Sliding I/O-cycle metrics (pypz's `_metrics_buffer`), over the last `METRICS_WINDOW` cycles. */
class CycleMetrics {
  readonly #entries: MetricEntry[] = [];
  #last: number | undefined;
  #lastCount = 0;

  record(now: number, count: number): void {
    if (this.#last !== undefined) {
      this.#entries.push({ elapsedMs: now - this.#last, records: this.#lastCount });
      if (this.#entries.length > METRICS_WINDOW) this.#entries.shift();
    }
    this.#last = now;
    this.#lastCount = count;
  }

  payload(now: number, kind: 'Read' | 'Output'): Record<string, number> {
    const n = this.#entries.length;
    const time = this.#entries.reduce((a, e) => a + e.elapsedMs, 0);
    const recs = this.#entries.reduce((a, e) => a + e.records, 0);
    return {
      [`elapsedTimeSinceLast${kind}CycleMs`]: this.#last === undefined ? 0 : now - this.#last,
      [`averageTimePer${kind}CycleMs`]: n === 0 ? 0 : time / n,
      [`averageTimePer${kind}RecordMs`]: recs === 0 ? 0 : time / recs,
      [`averageRecordPer${kind}Cycle`]: n === 0 ? 0 : recs / n,
    };
  }
}

export abstract class ChannelBase {
  readonly channelName: string;
  readonly contextName: string;
  readonly groupName: string | null;
  readonly groupIndex: number;
  readonly groupSize: number;
  readonly silent: boolean;
  readonly metricsEnabled: boolean;
  readonly codec: RecordCodec<unknown>;
  protected readonly logger: Logger;
  protected readonly now: () => number;
  protected readonly metrics = new CycleMetrics();
  readonly #heartbeatIntervalMs: number;

  resourcesCreated = false;
  resourcesDeleted = false;
  opened = false;
  started = false;
  stopped = false;
  closed = false;
  #closedSent = false;

  /** Counterparts by unique id (`name@context`). */
  readonly monitors = new Map<string, ChannelStatusMonitor>();
  #onCounterpart: Array<(m: ChannelStatusMonitor) => void> = [];
  #onStatus: Array<(m: ChannelStatusMessage, monitor: ChannelStatusMonitor) => void> = [];

  #heartbeat: Promise<void> | undefined;
  #heartbeatStop: (() => void) | undefined;
  #stopping = false;

  constructor(options: ChannelOptions, kind: string) {
    if (typeof options.channelName !== 'string' || options.channelName === '') {
      throw new SluiceError(
        'SLUICE_CONFIG_INVALID',
        `A ${kind} needs a channelName (the reading port's full name).`,
      );
    }
    if (typeof options.contextName !== 'string' || options.contextName === '') {
      throw new SluiceError(
        'SLUICE_CONFIG_INVALID',
        `A ${kind} needs a contextName (the full name of its own port).`,
      );
    }
    this.channelName = options.channelName;
    this.contextName = options.contextName;
    this.groupName = options.groupName ?? null;
    this.groupIndex = options.groupIndex ?? 0;
    this.groupSize = options.groupSize ?? 1;
    if (
      !Number.isInteger(this.groupSize) ||
      this.groupSize < 1 ||
      !Number.isInteger(this.groupIndex) ||
      this.groupIndex < 0 ||
      this.groupIndex >= this.groupSize
    ) {
      throw new SluiceError(
        'SLUICE_CONFIG_INVALID',
        `groupIndex ${this.groupIndex} / groupSize ${this.groupSize} are invalid: groupSize is a whole number ≥ 1 and 0 ≤ groupIndex < groupSize.`,
      );
    }
    this.silent = options.silent ?? false;
    this.metricsEnabled = options.metricsEnabled ?? false;
    this.codec = recordCodec(options.format);
    this.logger = (options.logger ?? createLogger({ name: 'channel' })).child({ channel: this.uniqueId });
    this.now = options.now ?? Date.now;
    this.#heartbeatIntervalMs = options.heartbeatIntervalMs ?? HEALTH_CHECK_INTERVAL_MS;
  }

  /** `<channelName>@<contextName>`. */
  get uniqueId(): string {
    return uniqueChannelId(this.channelName, this.contextName);
  }

  get isPrincipal(): boolean {
    return this.groupIndex === 0;
  }

  // ---- technology steps --------------------------------------------------------------------------------------

  protected abstract createResources(): Promise<boolean>;
  protected abstract deleteResources(): Promise<boolean>;
  protected abstract openChannel(): Promise<boolean>;
  protected abstract closeChannel(): Promise<boolean>;
  protected abstract sendStatusMessage(message: string): Promise<void>;
  /** Status messages received since the last call (JSON text). */
  protected abstract retrieveStatusMessages(): Promise<Array<string | Buffer>>;
  /** Called after `Started` was sent (Kafka flushes its status producer here). */
  protected async onStarted(): Promise<void> {}
  /** Health payload of this end (pypz: record counts, plus metrics when enabled). */
  abstract healthPayload(): Record<string, unknown>;

  // ---- wrappers ----------------------------------------------------------------------------------------------

  async invokeResourceCreation(): Promise<boolean> {
    if (!this.resourcesCreated)
      this.resourcesCreated = checkBool('createResources', await this.createResources());
    return this.resourcesCreated;
  }

  async invokeResourceDeletion(): Promise<boolean> {
    if (!this.resourcesDeleted)
      this.resourcesDeleted = checkBool('deleteResources', await this.deleteResources());
    return this.resourcesDeleted;
  }

  async invokeOpenChannel(): Promise<boolean> {
    if (this.opened) return true;
    if (!checkBool('openChannel', await this.openChannel())) return false;
    this.opened = true;
    await this.invokeSyncSendStatusMessage(ChannelStatus.Opened);
    await this.invokeSyncStatusUpdate();
    if (!this.silent) this.#startHeartbeat();
    return true;
  }

  /** Sends `Started`. */
  async invokeStartChannel(): Promise<void> {
    this.#requireOpen('start');
    if (this.started) return;
    await this.invokeSyncSendStatusMessage(ChannelStatus.Started);
    this.started = true;
    this.stopped = false;
    await this.onStarted();
  }

  /** Sends `Stopped` (writers flush their data first, so `Stopped` follows every record). */
  async invokeStopChannel(): Promise<void> {
    if (!this.started || this.stopped) return;
    await this.beforeStop();
    await this.invokeSyncSendStatusMessage(ChannelStatus.Stopped);
    this.stopped = true;
  }

  protected async beforeStop(): Promise<void> {}

  async invokeCloseChannel(): Promise<boolean> {
    if (this.closed) return true;
    await this.#stopHeartbeat();
    if (this.opened && !this.#closedSent) {
      if (this.started && !this.stopped) await this.invokeStopChannel();
      await this.invokeSyncSendStatusMessage(ChannelStatus.Closed);
      this.#closedSent = true;
    }
    this.closed = checkBool('closeChannel', await this.closeChannel());
    return this.closed;
  }

  /** Builds and sends one status message (nothing in silent mode). */
  async invokeSyncSendStatusMessage(status: ChannelStatus, payload: StatusPayload = null): Promise<void> {
    if (this.silent) return;
    await this.sendStatusMessage(
      encodeStatusMessage({
        channelName: this.channelName,
        channelContextName: this.contextName,
        channelGroupName: this.groupName,
        channelGroupIndex: this.groupIndex,
        status,
        payload,
        timestamp: this.now(),
      }),
    );
  }

  /** Sends `Error` (pypz does this on every open channel when the operator fails). */
  async invokeSendError(error: unknown): Promise<void> {
    const message = error instanceof Error ? error.message : String(error);
    await this.invokeSyncSendStatusMessage(ChannelStatus.Error, { message }).catch(() => undefined);
  }

  /** Reads the counterparts' new status messages and updates their monitors. */
  async invokeSyncStatusUpdate(): Promise<void> {
    const raw = await this.retrieveStatusMessages();
    const now = this.now();
    for (const r of raw) {
      let m: ChannelStatusMessage;
      try {
        m = parseStatusMessage(r);
      } catch (err) {
        this.logger.warn({ err }, 'ignored a status message that is not valid');
        continue;
      }
      if (m.channelName === this.channelName && m.channelContextName === this.contextName) continue;
      const id = uniqueChannelId(m.channelName, m.channelContextName);
      let monitor = this.monitors.get(id);
      const isNew = monitor === undefined;
      if (monitor === undefined) {
        monitor = new ChannelStatusMonitor(m, now);
        this.monitors.set(id, monitor);
      }
      const before = monitor.status;
      const warning = monitor.update(m, now);
      if (warning !== undefined) this.logger.warn(warning);
      if (isNew) {
        this.logger.info({ counterpart: id }, 'new counterpart');
        for (const fn of this.#onCounterpart) fn(monitor);
      }
      if (monitor.status !== before) {
        this.logger.info(
          { counterpart: id, status: monitor.status },
          `counterpart ${id} is ${monitor.status}`,
        );
      }
      for (const fn of this.#onStatus) fn(m, monitor);
    }
  }

  /** Called with the monitor of each counterpart the first time it is heard from. */
  onNewCounterpart(fn: (m: ChannelStatusMonitor) => void): void {
    this.#onCounterpart.push(fn);
  }

  /** Called with every status message received from a counterpart (after its monitor was updated). */
  onStatusMessage(fn: (m: ChannelStatusMessage, monitor: ChannelStatusMonitor) => void): void {
    this.#onStatus.push(fn);
  }

  /** Monitors of counterparts outside this end's own operator group. */
  protected foreignMonitors(): ChannelStatusMonitor[] {
    return [...this.monitors.values()].filter(
      (m) => this.groupName === null || m.groupName !== this.groupName,
    );
  }

  #requireOpen(what: string): void {
    if (!this.opened) {
      throw new SluiceError(
        'SLUICE_CHANNEL_STATE',
        `Cannot ${what} channel ${this.uniqueId}: it is not open. Drive invokeOpenChannel() until it returns true first.`,
      );
    }
    if (this.closed) {
      throw new SluiceError('SLUICE_CLOSED', `Channel ${this.uniqueId} is closed. Make a new one.`);
    }
  }

  protected requireStarted(what: string): void {
    this.#requireOpen(what);
  }

  // ---- heartbeat ---------------------------------------------------------------------------------------------

  #startHeartbeat(): void {
    if (this.#heartbeat !== undefined) return;
    this.#stopping = false;
    this.#heartbeat = this.#heartbeatLoop();
  }

  async #heartbeatLoop(): Promise<void> {
    let firstError: number | undefined;
    while (!this.#stopping) {
      const began = Date.now();
      try {
        await this.invokeSyncSendStatusMessage(ChannelStatus.HealthCheck, this.healthPayload());
        await this.invokeSyncStatusUpdate();
        firstError = undefined;
      } catch (err) {
        firstError ??= began;
        if (Date.now() - firstError >= HEARTBEAT_ERROR_BUDGET_MS) {
          this.logger.error(
            { err },
            `heartbeat failed for ${HEARTBEAT_ERROR_BUDGET_MS} ms in a row; it stops`,
          );
          break;
        }
        this.logger.warn({ err }, 'heartbeat failed; retrying');
      }
      const wait = Math.max(0, this.#heartbeatIntervalMs - (Date.now() - began));
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, wait);
        t.unref(); // heartbeats alone do not keep a process alive
        this.#heartbeatStop = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    await this.invokeSyncSendStatusMessage(ChannelStatus.HealthCheck, this.healthPayload()).catch(
      () => undefined,
    );
  }

  async #stopHeartbeat(): Promise<void> {
    this.#stopping = true;
    this.#heartbeatStop?.();
    await this.#heartbeat;
    this.#heartbeat = undefined;
  }
}

export abstract class ChannelReader<T = unknown> extends ChannelBase {
  readonly groupMode: boolean;
  readonly expectedWriterCount: number;
  /** Records returned in this process's lifetime. */
  readRecordCount = 0;
  /** Absolute position: the loaded offset plus the records read since. */
  readRecordOffset = OFFSET_NOT_INITIALIZED;
  /** The offset loaded at start (non-zero after a restart): what relative commits are compensated by. */
  initialRecordOffset = 0;
  lastOffsetCommitted = OFFSET_NOT_INITIALIZED;
  receivedRecordCount = 0;
  #lastReadCount = 0;

  constructor(options: ReaderOptions) {
    super(options, 'channel reader');
    this.groupMode = options.groupMode ?? false;
    this.expectedWriterCount = options.expectedWriterCount ?? 1;
  }

  protected abstract loadInputRecordOffset(): Promise<number>;
  /** Whether records are waiting (Kafka: lag > 0; RabbitMQ: ready messages or a local buffer). */
  abstract hasRecords(): Promise<boolean>;
  protected abstract readRecords(): Promise<Buffer[]>;
  protected abstract commitOffset(offset: number): Promise<void>;

  setInitialRecordOffset(offset: number): void {
    this.initialRecordOffset = offset;
    this.lastOffsetCommitted = offset;
    this.readRecordOffset = offset;
  }

  /** Loads the stored offset once (when the read offset is still NotInitialized). */
  async setInitialRecordOffsetAuto(): Promise<void> {
    if (this.readRecordOffset === OFFSET_NOT_INITIALIZED)
      this.setInitialRecordOffset(await this.loadInputRecordOffset());
  }

  /** The next records, decoded. Empty when nothing arrived in time. */
  async invokeReadRecords(): Promise<T[]> {
    this.requireStarted('read from');
    if (this.readRecordOffset === OFFSET_NOT_INITIALIZED) await this.setInitialRecordOffsetAuto();
    const bodies = await this.readRecords();
    if (!Array.isArray(bodies)) {
      throw new SluiceError(
        'SLUICE_CHANNEL_STATE',
        'readRecords must return an array (empty when nothing was read).',
      );
    }
    const records = bodies.map((b) => this.codec.decode(b) as T);
    this.readRecordCount += records.length;
    this.readRecordOffset += records.length;
    this.#lastReadCount = records.length;
    if (records.length > 0) this.receivedRecordCount += records.length;
    if (this.metricsEnabled) this.metrics.record(this.now(), records.length);
    return records;
  }

  /** Whether the last read returned records (a cheap hint that more may be waiting). */
  protected get lastReadHadRecords(): boolean {
    return this.#lastReadCount > 0;
  }

  /**
   * Commits `offset + initialRecordOffset` (offsets relative to this run, like the read count). Throws when that
   * passes the read offset, and when it goes back below the last commit unless `rewind` is set (pypz commits a
   * lower offset silently). An unchanged offset is not committed again.
   */
  async invokeCommitOffset(offset: number, options: { rewind?: boolean } = {}): Promise<void> {
    await this.#commitAbsolute(offset + this.initialRecordOffset, options.rewind ?? false);
  }

  /** Commits the current read offset (what pypz's framework does after every step). */
  async invokeCommitCurrentReadOffset(): Promise<void> {
    if (this.readRecordOffset === OFFSET_NOT_INITIALIZED) return;
    await this.#commitAbsolute(this.readRecordOffset, false);
  }

  async #commitAbsolute(absolute: number, rewind: boolean): Promise<void> {
    if (!Number.isInteger(absolute)) {
      throw new SluiceError(
        'SLUICE_CHANNEL_OFFSET',
        `Cannot commit offset ${absolute}: offsets are whole numbers.`,
      );
    }
    if (absolute > this.readRecordOffset) {
      throw new SluiceError(
        'SLUICE_CHANNEL_OFFSET',
        `Cannot commit offset ${absolute} on ${this.uniqueId}: only ${this.readRecordOffset} records have been read ` +
          `(initial offset ${this.initialRecordOffset}, ${this.readRecordCount} read in this run). Commit at most what was read; ` +
          'invokeCommitOffset takes an offset relative to this run.',
      );
    }
    if (absolute === this.lastOffsetCommitted) return;
    if (absolute < this.lastOffsetCommitted && !rewind) {
      throw new SluiceError(
        'SLUICE_CHANNEL_OFFSET',
        `Cannot commit offset ${absolute} on ${this.uniqueId}: it is below the last commit (${this.lastOffsetCommitted}), ` +
          'which would re-deliver records already processed. Pass { rewind: true } to move back on purpose.',
      );
    }
    await this.commitOffset(absolute);
    this.lastOffsetCommitted = absolute;
  }

  /** Tells the writers this reader processed what it got (pypz `acknowledge_input`). */
  async acknowledgeInput(): Promise<void> {
    await this.invokeSyncSendStatusMessage(ChannelStatus.Acknowledged);
  }

  /** Writers outside this reader's group that are unhealthy, stopped or closed. */
  finishedWriterCount(): number {
    const now = this.now();
    return this.foreignMonitors().filter((m) => m.isFinished(now)).length;
  }

  /** `hasRecords() || expectedWriterCount > finished writers` (pypz `ChannelInputPort.can_retrieve`). */
  async canRetrieve(): Promise<boolean> {
    if (await this.hasRecords()) return true;
    if (this.expectedWriterCount > this.finishedWriterCount()) {
      // statuses may have arrived since the heartbeat last looked
      await this.invokeSyncStatusUpdate();
      if (this.expectedWriterCount <= this.finishedWriterCount()) return this.hasRecords();
      return true;
    }
    return false;
  }

  /** Writers outside this reader's group heard from so far. */
  connectedWriterCount(): number {
    return this.foreignMonitors().length;
  }

  /** Readers can close when they are not the principal, or when every replica has finished. */
  canClose(): boolean {
    if (!this.isPrincipal || this.groupSize <= 1 || this.groupName === null) return true;
    const now = this.now();
    const replicas = [...this.monitors.values()].filter((m) => m.groupName === this.groupName);
    return replicas.length >= this.groupSize - 1 && replicas.every((m) => m.isFinished(now));
  }

  healthPayload(): Record<string, unknown> {
    return {
      receivedRecordCount: this.receivedRecordCount,
      ...(this.metricsEnabled ? this.metrics.payload(this.now(), 'Read') : {}),
    };
  }
}

export abstract class ChannelWriter<T = unknown> extends ChannelBase {
  sentRecordCount = 0;

  constructor(options: ChannelOptions) {
    super(options, 'channel writer');
  }

  protected abstract writeRecords(bodies: Buffer[]): Promise<void>;
  /** Waits until every record written so far is stored by the broker. */
  protected abstract flush(): Promise<void>;

  protected override async beforeStop(): Promise<void> {
    await this.flush();
  }

  /** Encodes the whole batch (failing it as a whole on an invalid record), then writes it. */
  async invokeWriteRecords(records: readonly T[]): Promise<void> {
    this.requireStarted('write to');
    const bodies = this.codec.encodeBatch(records as unknown[]);
    await this.writeRecords(bodies);
    this.sentRecordCount += bodies.length;
    for (const m of this.monitors.values()) m.acknowledged = false;
    if (this.metricsEnabled) this.metrics.record(this.now(), bodies.length);
  }

  /** Every healthy reader has acknowledged since the last write. */
  isAllAcknowledged(): boolean {
    const now = this.now();
    return [...this.monitors.values()].filter((m) => m.isHealthy(now)).every((m) => m.acknowledged);
  }

  canClose(): boolean {
    return true;
  }

  healthPayload(): Record<string, unknown> {
    return {
      sentRecordCount: this.sentRecordCount,
      ...(this.metricsEnabled ? this.metrics.payload(this.now(), 'Output') : {}),
    };
  }
}
