import { findErrorBy } from '@platformatic/kafka';
import { describeError, type ErrorCode, isSluiceError, SluiceError } from '../../errors.ts';

/** The Kafka error id (`UNKNOWN_TOPIC_OR_PARTITION` …) anywhere in a platformatic error chain, if any. */
export function kafkaErrorId(err: unknown, ...ids: string[]): string | undefined {
  if (!(err instanceof Error)) return undefined;
  for (const id of ids) {
    if (findErrorBy(err, 'apiId', id)) return id;
  }
  return undefined;
}

/** Whether the chain contains a network failure (refused, reset, timed out). */
export function isNetworkError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  return (
    findErrorBy(err, 'code', 'PLT_KFK_NETWORK') !== null ||
    findErrorBy(err, 'code', 'PLT_KFK_TIMEOUT') !== null
  );
}

/** Every message in a platformatic error chain, innermost details included, de-duplicated. */
export function flattenMessages(err: unknown): string {
  const seen = new Set<string>();
  const walk = (e: unknown, depth: number): void => {
    if (depth > 6 || e === null || e === undefined) return;
    if (e instanceof Error) {
      const server = (e as { serverErrorMessage?: unknown }).serverErrorMessage;
      const msg = typeof server === 'string' && server !== '' ? `${e.message} (${server})` : e.message;
      if (msg && !/failed \d+ times\.$/.test(msg)) seen.add(msg);
      const inner = (e as { errors?: unknown }).errors;
      if (Array.isArray(inner)) for (const x of inner) walk(x, depth + 1);
      walk((e as { cause?: unknown }).cause, depth + 1);
    } else {
      seen.add(String(e));
    }
  };
  walk(err, 0);
  const all = [...seen];
  return all.length === 0 ? describeError(err) : all.slice(-3).join('; ');
}

export function unknownTopicError(topic: string, cause?: unknown): SluiceError {
  return new SluiceError(
    'SLUICE_TOPIC_UNKNOWN',
    `Kafka topic "${topic}" does not exist. Create it first (sluice topics create ${topic} --partitions N), or enable auto-creation (autoCreateTopics: true).`,
    { cause, details: { topic } },
  );
}

export function closedError(what: string): SluiceError {
  return new SluiceError(
    'SLUICE_CLOSED',
    `This Kafka ${what} is closed. Create a new one from the transport (or reopen the transport) to continue.`,
  );
}

/**
 * Turns any error from the Kafka client into a SluiceError with a stable code and a message that says what went
 * wrong and how to fix it. `action` names what was being done ("send to topic x").
 */
export function toSluiceError(
  err: unknown,
  action: string,
  brokers: string[],
  fallback?: ErrorCode,
): SluiceError {
  if (isSluiceError(err)) return err as SluiceError;
  const detail = flattenMessages(err);
  if (err instanceof Error && findErrorBy(err, 'code', 'PLT_KFK_AUTHENTICATION')) {
    return new SluiceError(
      'SLUICE_CONFIG_INVALID',
      `Kafka rejected the credentials while trying to ${action} (${detail}). Check sasl.mechanism, sasl.username and sasl.password (and security.protocol) against the broker's listener.`,
      { cause: err },
    );
  }
  const id = kafkaErrorId(
    err,
    'UNKNOWN_TOPIC_OR_PARTITION',
    'UNKNOWN_TOPIC_ID',
    'TOPIC_ALREADY_EXISTS',
    'MESSAGE_TOO_LARGE',
    'RECORD_LIST_TOO_LARGE',
    'ILLEGAL_GENERATION',
    'UNKNOWN_MEMBER_ID',
    'REBALANCE_IN_PROGRESS',
    'FENCED_INSTANCE_ID',
    'PRODUCER_FENCED',
    'INVALID_PRODUCER_EPOCH',
    'TRANSACTIONAL_ID_AUTHORIZATION_FAILED',
    'TOPIC_AUTHORIZATION_FAILED',
    'GROUP_AUTHORIZATION_FAILED',
    'CLUSTER_AUTHORIZATION_FAILED',
    'INVALID_PARTITIONS',
    'INVALID_REPLICATION_FACTOR',
    'INVALID_TOPIC_EXCEPTION',
    'POLICY_VIOLATION',
    'INVALID_CONFIG',
  );
  switch (id) {
    case 'UNKNOWN_TOPIC_OR_PARTITION':
    case 'UNKNOWN_TOPIC_ID':
      return new SluiceError(
        'SLUICE_TOPIC_UNKNOWN',
        `Kafka does not know the topic or partition while trying to ${action} (${detail}). Create the topic first (sluice topics create), or enable auto-creation (autoCreateTopics: true).`,
        { cause: err },
      );
    case 'TOPIC_ALREADY_EXISTS':
      return new SluiceError(
        'SLUICE_TOPIC_EXISTS',
        `Could not ${action}: the topic already exists. Use it as it is, delete it first, or pass { ifNotExists: true }.`,
        { cause: err },
      );
    case 'MESSAGE_TOO_LARGE':
    case 'RECORD_LIST_TOO_LARGE':
      return new SluiceError(
        'SLUICE_DELIVERY_FAILED',
        `Kafka refused a record as too large while trying to ${action} (${detail}). Send smaller records (smaller chunks), or raise the broker's message.max.bytes / the topic's max.message.bytes (and the transport's maxBatchBytes).`,
        { cause: err },
      );
    case 'ILLEGAL_GENERATION':
    case 'UNKNOWN_MEMBER_ID':
    case 'REBALANCE_IN_PROGRESS':
    case 'FENCED_INSTANCE_ID':
      return new SluiceError(
        'SLUICE_REBALANCE',
        `Could not ${action}: the consumer group rebalanced and this member no longer owns the partitions (${detail}). Their records will be re-delivered to the new owner; commit in onRevoke to keep progress across rebalances.`,
        { cause: err, canRetry: true },
      );
    case 'PRODUCER_FENCED':
    case 'INVALID_PRODUCER_EPOCH':
      return new SluiceError(
        'SLUICE_DELIVERY_FAILED',
        `Could not ${action}: another producer with the same transactionalId started and fenced this one (${detail}). Only one live instance may use a transactionalId; close this producer and let the newer instance continue.`,
        { cause: err },
      );
    case 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED':
    case 'TOPIC_AUTHORIZATION_FAILED':
    case 'GROUP_AUTHORIZATION_FAILED':
    case 'CLUSTER_AUTHORIZATION_FAILED':
      return new SluiceError(
        'SLUICE_CONFIG_INVALID',
        `Kafka denied the request while trying to ${action} (${detail}). Grant the principal the needed ACLs, or connect with a user that has them.`,
        { cause: err },
      );
    case 'INVALID_PARTITIONS':
    case 'INVALID_REPLICATION_FACTOR':
    case 'INVALID_TOPIC_EXCEPTION':
    case 'POLICY_VIOLATION':
    case 'INVALID_CONFIG':
      return new SluiceError(
        'SLUICE_CONFIG_INVALID',
        `Kafka rejected the settings while trying to ${action} (${detail}). Check the partition count, replication factor (at most the number of brokers) and retention values.`,
        { cause: err },
      );
    default:
      break;
  }
  if (isNetworkError(err)) {
    return new SluiceError(
      'SLUICE_BROKER_UNREACHABLE',
      `Could not reach the Kafka broker(s) ${brokers.join(', ')} to ${action} (${detail}). Check that the broker runs and that bootstrap.servers, security.protocol and the network allow the connection.`,
      { cause: err, canRetry: true },
    );
  }
  return new SluiceError(
    fallback ?? 'SLUICE_TRANSPORT',
    `Kafka failed to ${action}: ${detail}. If this persists, check the broker logs and the transport options.`,
    { cause: err, canRetry: err instanceof Error && findErrorBy(err, 'canRetry', true) !== null },
  );
}
