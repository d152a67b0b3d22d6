import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import { SluiceError } from '../../errors.ts';
import { kafkaErrorId } from './errors.ts';

/** SASL mechanisms the Kafka transport can use (GSSAPI needs a Kerberos library and is not offered). */
export const SASL_MECHANISMS = ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512', 'OAUTHBEARER'] as const;
export type SaslMechanism = (typeof SASL_MECHANISMS)[number];

export interface KafkaSaslOptions {
  mechanism: SaslMechanism;
  username?: string;
  password?: string;
  /** OAUTHBEARER token. */
  token?: string;
}

export interface KafkaTransportOptions {
  /**
   * Bootstrap brokers: `host:port` strings, as an array or one comma-separated string (Kafka's
   * `bootstrap.servers`). A missing port means 9092.
   */
  bootstrapServers: string | string[];
  /** Sent to the brokers with every request (logs, quotas). @defaultValue `sluice` */
  clientId?: string;
  /** SASL authentication, passed through to the client. */
  sasl?: KafkaSaslOptions;
  /** TLS: `true` for the system CAs, or Node TLS options (e.g. `{ ca }`), passed through to the client. */
  tls?: boolean | TlsConnectionOptions;
  /**
   * Bound on reaching the cluster when the transport opens; an unreachable broker fails with
   * SLUICE_BROKER_UNREACHABLE after at most this long. @defaultValue 10000
   */
  connectTimeoutMs?: number;
  /** Bound on one broker request. Also the transaction timeout of `sendAndCommit`. @defaultValue 30000 */
  requestTimeoutMs?: number;
  /** Partition count of topics the transport creates without an explicit count. @defaultValue 1 */
  defaultPartitions?: number;
  /** Replication factor of topics the transport creates; -1 means the broker's default. @defaultValue -1 */
  replicationFactor?: number;
  /**
   * Largest record batch sent to one partition in one request, in bytes (Kafka's `max.request.size`, whose
   * default matches the broker's `message.max.bytes`). A single larger record is still sent, alone.
   * @defaultValue 1048576
   */
  maxBatchBytes?: number;
  /** Compression of produced batches. @defaultValue `none` */
  compression?: 'none' | 'gzip' | 'snappy' | 'lz4' | 'zstd';
  /** Longest time a fetch waits on the broker for data before returning empty. @defaultValue 500 */
  fetchMaxWaitMs?: number;
  /** Most bytes one fetch returns per partition. @defaultValue 8388608 */
  fetchMaxBytesPerPartition?: number;
  /** Most bytes one consumer buffers ahead of `poll()` before it stops fetching. @defaultValue 67108864 */
  consumerBufferBytes?: number;
}

export interface ResolvedKafkaOptions {
  brokers: string[];
  clientId: string;
  sasl: KafkaSaslOptions | undefined;
  tls: TlsConnectionOptions | undefined;
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  defaultPartitions: number;
  replicationFactor: number;
  maxBatchBytes: number;
  compression: 'none' | 'gzip' | 'snappy' | 'lz4' | 'zstd';
  fetchMaxWaitMs: number;
  fetchMaxBytesPerPartition: number;
  consumerBufferBytes: number;
}

const KNOWN_KEYS = new Set([
  'bootstrapServers',
  'clientId',
  'sasl',
  'tls',
  'connectTimeoutMs',
  'requestTimeoutMs',
  'defaultPartitions',
  'replicationFactor',
  'maxBatchBytes',
  'compression',
  'fetchMaxWaitMs',
  'fetchMaxBytesPerPartition',
  'consumerBufferBytes',
]);

function invalid(message: string): SluiceError {
  return new SluiceError('SLUICE_CONFIG_INVALID', message);
}

/**
 * Parses one bootstrap address into `host:port` (IPv6 as `[addr]:port`). Accepts an optional
 * `PLAINTEXT://`-style listener prefix, as found in copied broker configs.
 */
export function parseBroker(raw: string): string {
  const text = raw.trim().replace(/^[A-Za-z_]+:\/\//, '');
  const fail = (why: string): SluiceError =>
    new SluiceError(
      'SLUICE_BROKER_URL',
      `Bad Kafka bootstrap address "${raw}": ${why}. Write it as host:port (e.g. 127.0.0.1:9092 or [::1]:9092), several separated by commas.`,
    );
  if (text === '') throw fail('it is empty');
  let host: string;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    if (end < 0) throw fail('an IPv6 address needs a closing "]"');
    host = text.slice(0, end + 1);
    const rest = text.slice(end + 1);
    if (rest !== '' && !rest.startsWith(':')) throw fail('expected ":port" after the IPv6 address');
    portText = rest === '' ? undefined : rest.slice(1);
  } else {
    const parts = text.split(':');
    if (parts.length > 2) throw fail('an IPv6 address must be written in brackets, like [::1]:9092');
    host = parts[0]!;
    portText = parts[1];
  }
  if (host === '' || host === '[]') throw fail('the host is missing');
  if (/[\s/]/.test(host)) throw fail('the host contains a space or "/"');
  let port = 9092;
  if (portText !== undefined) {
    if (!/^\d+$/.test(portText)) throw fail(`the port "${portText}" is not a number`);
    port = Number(portText);
    if (port < 1 || port > 65535) throw fail(`the port ${port} is outside 1-65535`);
  }
  return `${host}:${port}`;
}

/** Splits `bootstrap.servers` (string with commas, or array) into validated `host:port` entries. */
export function parseBootstrapServers(value: string | string[]): string[] {
  const list = (Array.isArray(value) ? value : value.split(','))
    .map((s) => (typeof s === 'string' ? s.trim() : s))
    .filter((s) => s !== '');
  if (list.length === 0) {
    throw new SluiceError(
      'SLUICE_BROKER_URL',
      'No Kafka bootstrap servers given. Pass bootstrapServers (e.g. "127.0.0.1:9092"), or set bootstrap.servers in the [broker] section of the config file.',
    );
  }
  return list.map((s) => {
    if (typeof s !== 'string') {
      throw new SluiceError(
        'SLUICE_BROKER_URL',
        `Bad Kafka bootstrap address ${JSON.stringify(s)}: expected a "host:port" string.`,
      );
    }
    return parseBroker(s);
  });
}

function positiveInt(
  options: KafkaTransportOptions,
  key: keyof KafkaTransportOptions,
  fallback: number,
  min = 1,
): number {
  const v = options[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    throw invalid(
      `Kafka transport option ${key} is ${JSON.stringify(v)}; it must be an integer >= ${min}. Fix the value or leave it out for the default (${fallback}).`,
    );
  }
  return v;
}

/** Validates the options and fills in defaults; every failure names the option and the fix. */
export function resolveKafkaOptions(options: KafkaTransportOptions): ResolvedKafkaOptions {
  if (typeof options !== 'object' || options === null) {
    throw invalid(
      'Kafka transport options must be an object such as { bootstrapServers: "127.0.0.1:9092" }.',
    );
  }
  for (const key of Object.keys(options)) {
    if (!KNOWN_KEYS.has(key)) {
      throw invalid(
        `Unknown Kafka transport option "${key}". Known options: ${[...KNOWN_KEYS].join(', ')}. Remove it or fix its spelling.`,
      );
    }
  }
  if (options.bootstrapServers === undefined) {
    throw new SluiceError(
      'SLUICE_BROKER_URL',
      'Kafka transport option bootstrapServers is missing. Pass the broker address, e.g. { bootstrapServers: "127.0.0.1:9092" }.',
    );
  }
  const brokers = parseBootstrapServers(options.bootstrapServers);
  const clientId = options.clientId ?? 'sluice';
  if (typeof clientId !== 'string' || clientId === '' || !/^[\w.-]+$/.test(clientId)) {
    throw invalid(
      `Kafka transport option clientId is ${JSON.stringify(clientId)}; use letters, digits, ".", "_" and "-" only.`,
    );
  }
  let sasl: KafkaSaslOptions | undefined;
  if (options.sasl !== undefined) {
    const s = options.sasl;
    if (typeof s !== 'object' || s === null || !SASL_MECHANISMS.includes(s.mechanism)) {
      throw invalid(
        `Kafka transport option sasl.mechanism is ${JSON.stringify((s as { mechanism?: unknown } | null)?.mechanism)}; use one of ${SASL_MECHANISMS.join(', ')}.`,
      );
    }
    if (s.mechanism === 'OAUTHBEARER') {
      if (typeof s.token !== 'string' || s.token === '') {
        throw invalid('SASL mechanism OAUTHBEARER needs sasl.token (the bearer token).');
      }
    } else if (typeof s.username !== 'string' || typeof s.password !== 'string' || s.username === '') {
      throw invalid(`SASL mechanism ${s.mechanism} needs sasl.username and sasl.password.`);
    }
    sasl = { ...s };
  }
  let tls: TlsConnectionOptions | undefined;
  if (options.tls === true) tls = {};
  else if (options.tls === false || options.tls === undefined) tls = undefined;
  else if (typeof options.tls === 'object' && options.tls !== null) tls = options.tls;
  else {
    throw invalid(
      `Kafka transport option tls is ${JSON.stringify(options.tls)}; use true, false or Node TLS options like { ca }.`,
    );
  }
  const compression = options.compression ?? 'none';
  if (!['none', 'gzip', 'snappy', 'lz4', 'zstd'].includes(compression)) {
    throw invalid(
      `Kafka transport option compression is ${JSON.stringify(compression)}; use none, gzip, snappy, lz4 or zstd.`,
    );
  }
  const replicationFactor = options.replicationFactor ?? -1;
  if (!Number.isInteger(replicationFactor) || (replicationFactor < 1 && replicationFactor !== -1)) {
    throw invalid(
      `Kafka transport option replicationFactor is ${JSON.stringify(replicationFactor)}; use a positive integer, or -1 for the broker's default.`,
    );
  }
  return {
    brokers,
    clientId,
    sasl,
    tls,
    connectTimeoutMs: positiveInt(options, 'connectTimeoutMs', 10_000),
    requestTimeoutMs: positiveInt(options, 'requestTimeoutMs', 30_000),
    defaultPartitions: positiveInt(options, 'defaultPartitions', 1),
    replicationFactor,
    maxBatchBytes: positiveInt(options, 'maxBatchBytes', 1_048_576, 1024),
    compression,
    fetchMaxWaitMs: positiveInt(options, 'fetchMaxWaitMs', 500, 0),
    fetchMaxBytesPerPartition: positiveInt(options, 'fetchMaxBytesPerPartition', 8 * 1_048_576, 1024),
    consumerBufferBytes: positiveInt(options, 'consumerBufferBytes', 64 * 1_048_576, 1024),
  };
}

/**
 * How long the client waits before retrying. A transaction started right after the previous one committed is
 * usually refused with CONCURRENT_TRANSACTIONS for a few milliseconds while the broker writes the markers; the
 * Java client retries that after ~20 ms, and a fixed 250 ms made each exactly-once file cost a quarter second.
 * Everything else keeps 250 ms.
 */
export function retryDelay(
  _client: unknown,
  _operation: string,
  attempt: number,
  _retries: number,
  error: Error,
): number {
  if (kafkaErrorId(error, 'CONCURRENT_TRANSACTIONS', 'COORDINATOR_LOAD_IN_PROGRESS') !== undefined) {
    return Math.min(250, 10 * 2 ** attempt);
  }
  return 250;
}

/** The connection options shared by every platformatic client the transport makes. */
export function baseClientOptions(o: ResolvedKafkaOptions, role: string) {
  return {
    clientId: `${o.clientId}-${role}`,
    bootstrapBrokers: o.brokers,
    connectTimeout: o.connectTimeoutMs,
    timeout: o.requestTimeoutMs,
    requestTimeout: o.requestTimeoutMs,
    retries: 6,
    retryDelay: retryDelay,
    ...(o.sasl === undefined ? {} : { sasl: { ...o.sasl } }),
    ...(o.tls === undefined ? {} : { tls: o.tls }),
  };
}
