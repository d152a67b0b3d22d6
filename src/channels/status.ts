/**
 * pypz's channel status protocol: the eight status values, the JSON status message, and the per-counterpart
 * monitor that judges a counterpart's state and health from the messages it sent.
 *
 * Wire form (what pypz's `json.dumps` produces; receivers parse JSON, so key order and spacing are courtesy):
 * `{"channel_name": "...", "channel_context_name": "...", "channel_group_name": null, "channel_group_index": 0,
 *   "status": "HealthCheck", "payload": {...}, "timestamp": 1714816000000}`
 */
import { SluiceError } from '../errors.ts';

export const ChannelStatus = {
  Opened: 'Opened',
  Started: 'Started',
  Stopped: 'Stopped',
  Closed: 'Closed',
  HealthCheck: 'HealthCheck',
  Error: 'Error',
  WaitingForSchema: 'WaitingForSchema',
  Acknowledged: 'Acknowledged',
} as const;
export type ChannelStatus = (typeof ChannelStatus)[keyof typeof ChannelStatus];

const STATUS_VALUES = new Set<string>(Object.values(ChannelStatus));

/** The statuses that change a counterpart's current state; the others only prove it is alive. */
const STATE_CHANGING = new Set<ChannelStatus>(['Opened', 'Closed', 'Started', 'Stopped', 'Error']);

/** pypz `NameSeparator`: a channel end's unique id is `<channel_name>@<channel_context_name>`. */
export const NAME_SEPARATOR = '@';

/** pypz `DefaultStatusThreadIntervalInMs`: how often an open channel sends a HealthCheck. */
export const HEALTH_CHECK_INTERVAL_MS = 2000;
/** pypz `ControlLoopExceptionTimeoutInMs`: the heartbeat gives up after failing for this long. */
export const HEARTBEAT_ERROR_BUDGET_MS = 60_000;
/** pypz `ValidPatienceTimeInMs`: a counterpart silent for this long is unhealthy. */
export const HEALTH_PATIENCE_MS = 120_000;
/** A received timestamp this far in the future gets a clock-skew warning (health uses the sender's clock). */
export const CLOCK_SKEW_WARNING_MS = 5000;

export type StatusPayload = Record<string, unknown> | null;

export interface ChannelStatusMessage {
  channelName: string;
  channelContextName: string;
  channelGroupName: string | null;
  channelGroupIndex: number;
  status: ChannelStatus;
  payload: StatusPayload;
  /** Sender's wall clock, epoch ms. */
  timestamp: number;
}

export function uniqueChannelId(channelName: string, contextName: string): string {
  return `${channelName}${NAME_SEPARATOR}${contextName}`;
}

export function isChannelStatus(value: unknown): value is ChannelStatus {
  return typeof value === 'string' && STATUS_VALUES.has(value);
}

/** Serialises like Python's `json.dumps` defaults: `", "` and `": "` separators, non-ASCII as `\uXXXX`. */
export function pythonJson(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') {
    return JSON.stringify(value).replace(
      /[\u007f-\uffff]/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
    );
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return Number.isNaN(value) ? 'NaN' : value > 0 ? 'Infinity' : '-Infinity';
    return JSON.stringify(value);
  }
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'bigint') return value.toString();
  if (Array.isArray(value)) return `[${value.map(pythonJson).join(', ')}]`;
  if (typeof value === 'object') {
    const parts: string[] = [];
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (v !== undefined) parts.push(`${pythonJson(k)}: ${pythonJson(v)}`);
    }
    return `{${parts.join(', ')}}`;
  }
  return 'null';
}

export function encodeStatusMessage(m: ChannelStatusMessage): string {
  return pythonJson({
    channel_name: m.channelName,
    channel_context_name: m.channelContextName,
    channel_group_name: m.channelGroupName,
    channel_group_index: m.channelGroupIndex,
    status: m.status,
    payload: m.payload,
    timestamp: m.timestamp,
  });
}

function invalid(why: string, text: string): SluiceError {
  const shown = text.length > 200 ? `${text.slice(0, 200)}…` : text;
  return new SluiceError(
    'SLUICE_CHANNEL_STATUS',
    `Invalid channel status message (${why}): ${shown}. A status message is JSON with channel_name, ` +
      'channel_context_name, channel_group_name, channel_group_index, status (one of ' +
      `${[...STATUS_VALUES].join(', ')}), payload and timestamp (epoch ms); check what writes to this status topic.`,
  );
}

/** Parses a status message from its JSON text (or an already parsed object). Throws SLUICE_CHANNEL_STATUS. */
export function parseStatusMessage(input: string | Buffer | Record<string, unknown>): ChannelStatusMessage {
  const text = typeof input === 'string' ? input : Buffer.isBuffer(input) ? input.toString('utf8') : '';
  let o: unknown = input;
  if (typeof input === 'string' || Buffer.isBuffer(input)) {
    try {
      o = JSON.parse(text);
    } catch {
      throw invalid('not JSON', text);
    }
  }
  const shown = text || JSON.stringify(o);
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw invalid('not a JSON object', shown);
  const r = o as Record<string, unknown>;
  if (typeof r.channel_name !== 'string') throw invalid('channel_name is not a string', shown);
  if (typeof r.channel_context_name !== 'string')
    throw invalid('channel_context_name is not a string', shown);
  const groupName = r.channel_group_name ?? null;
  if (groupName !== null && typeof groupName !== 'string')
    throw invalid('channel_group_name is not a string or null', shown);
  const groupIndex = r.channel_group_index ?? 0;
  if (typeof groupIndex !== 'number' || !Number.isInteger(groupIndex)) {
    throw invalid('channel_group_index is not an integer', shown);
  }
  if (!isChannelStatus(r.status)) throw invalid(`unknown status ${JSON.stringify(r.status)}`, shown);
  let payload = r.payload ?? null;
  if (typeof payload === 'string') {
    try {
      payload = JSON.parse(payload);
    } catch {
      payload = { value: payload };
    }
  }
  if (payload !== null && (typeof payload !== 'object' || Array.isArray(payload))) {
    throw invalid('payload is not an object or null', shown);
  }
  if (typeof r.timestamp !== 'number' || !Number.isFinite(r.timestamp))
    throw invalid('timestamp is not a number', shown);
  return {
    channelName: r.channel_name,
    channelContextName: r.channel_context_name,
    channelGroupName: groupName,
    channelGroupIndex: groupIndex,
    status: r.status,
    payload: payload as StatusPayload,
    timestamp: Math.trunc(r.timestamp),
  };
}

/**
 * What one channel end knows about one counterpart (pypz `ChannelStatusMonitor`):
 * - `lastUpdate` = the newest timestamp seen; older messages only warn;
 * - the current status changes only on Opened/Closed/Started/Stopped/Error with a timestamp ≥ the last change,
 *   and Error stays until Opened or Started;
 * - healthy while `now − lastUpdate < 120 s` (the creation time counts before any message).
 */
export class ChannelStatusMonitor {
  readonly channelName: string;
  readonly contextName: string;
  readonly groupName: string | null;
  readonly groupIndex: number;
  readonly createdAt: number;
  status: ChannelStatus | undefined;
  lastUpdate: number;
  lastStatusChange = 0;
  lastPayload: StatusPayload = null;
  /** Status → the newest timestamp it was seen with. */
  readonly seen = new Map<ChannelStatus, number>();
  /** Set by Acknowledged, cleared by the writer's next write. */
  acknowledged = false;

  constructor(first: ChannelStatusMessage, now: number) {
    this.channelName = first.channelName;
    this.contextName = first.channelContextName;
    this.groupName = first.channelGroupName;
    this.groupIndex = first.channelGroupIndex;
    this.createdAt = now;
    this.lastUpdate = Number.NEGATIVE_INFINITY;
  }

  get uniqueId(): string {
    return uniqueChannelId(this.channelName, this.contextName);
  }

  /** Applies one message; returns a warning to log (stale or future timestamp), if any. */
  update(m: ChannelStatusMessage, now: number): string | undefined {
    let warning: string | undefined;
    if (m.timestamp < this.lastUpdate) {
      warning = `status ${m.status} from ${this.uniqueId} is older (${m.timestamp}) than the last one (${this.lastUpdate})`;
    } else {
      this.lastUpdate = m.timestamp;
    }
    if (m.timestamp - now > CLOCK_SKEW_WARNING_MS) {
      warning = `status ${m.status} from ${this.uniqueId} is ${m.timestamp - now} ms in the future: clocks differ, and health is judged by the sender's clock`;
    }
    this.seen.set(m.status, Math.max(this.seen.get(m.status) ?? 0, m.timestamp));
    this.lastPayload = m.payload ?? this.lastPayload;
    if (m.status === 'Acknowledged') this.acknowledged = true;
    if (STATE_CHANGING.has(m.status) && m.timestamp >= this.lastStatusChange) {
      const errorSticks = this.status === 'Error' && m.status !== 'Opened' && m.status !== 'Started';
      if (!errorSticks) {
        this.status = m.status;
        this.lastStatusChange = m.timestamp;
      }
    }
    return warning;
  }

  isHealthy(now: number): boolean {
    const last = this.lastUpdate === Number.NEGATIVE_INFINITY ? this.createdAt : this.lastUpdate;
    return now - last < HEALTH_PATIENCE_MS;
  }

  /** Stopped, closed or silent: the counterpart will not send any more records. */
  isFinished(now: number): boolean {
    return !this.isHealthy(now) || this.status === 'Stopped' || this.status === 'Closed';
  }
}
