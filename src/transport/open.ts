import { SluiceError } from '../errors.ts';
import { DEFAULT_EMBEDDED_PATH } from './embedded/embedded.ts';
import type { Transport } from './types.ts';

/**
 * Where a program connects, in one string (the `--broker` option, or `$SLUICE_BROKER`):
 * - `file:PATH` (or `file://PATH`): the embedded broker in that SQLite file. Default `file:./.sluice/broker.db`.
 * - `kafka://HOST:PORT[,HOST:PORT…]` or plain `HOST:PORT[,…]`: a Kafka cluster.
 * - `amqp://USER:PASSWORD@HOST:PORT[/VHOST]` (or `amqps://`): RabbitMQ (stream queues).
 */
export type BrokerSpec =
  | { kind: 'embedded'; path: string }
  | { kind: 'kafka'; bootstrapServers: string[] }
  | { kind: 'rabbitmq'; url: string };

export const BROKER_HELP =
  'file:PATH for the embedded broker (default file:./.sluice/broker.db), or kafka://HOST:PORT[,HOST:PORT…] ' +
  '(plain HOST:PORT also works) for Kafka, or amqp://USER:PASSWORD@HOST:PORT for RabbitMQ';

export function parseBrokerSpec(spec: string | undefined): BrokerSpec {
  const raw = (spec ?? '').trim();
  if (raw === '') return { kind: 'embedded', path: DEFAULT_EMBEDDED_PATH };
  if (raw.startsWith('file:')) {
    const path = raw.replace(/^file:(\/\/)?/, '');
    if (path === '') {
      throw new SluiceError(
        'SLUICE_BROKER_URL',
        `--broker ${raw} names no file. Write file:PATH, e.g. file:./.sluice/broker.db.`,
      );
    }
    return { kind: 'embedded', path };
  }
  if (/^amqps?:\/\//.test(raw)) return { kind: 'rabbitmq', url: raw };
  const kafka = raw.replace(/^kafka:\/\//, '');
  if (/^[^\s/:]+(:\d+)?(,[^\s/:]+(:\d+)?)*$/.test(kafka) || /^\[/.test(kafka)) {
    return { kind: 'kafka', bootstrapServers: kafka.split(',') };
  }
  throw new SluiceError(
    'SLUICE_BROKER_URL',
    `Cannot tell which broker ${JSON.stringify(raw)} means. Use ${BROKER_HELP}.`,
  );
}

export interface OpenTransportOptions {
  /** A broker spec (see `parseBrokerSpec`); falls back to `$SLUICE_BROKER`, then the embedded default. */
  broker?: string;
  /**
   * An OpenMSIStream-style INI config file. Its `[broker]` section selects a Kafka cluster (unless `broker` is
   * also given, which wins).
   */
  config?: string;
  /** Client id sent to Kafka. */
  clientId?: string;
}

/** Opens the transport a program was pointed at. Kafka's client is loaded only when Kafka is used. */
export async function openTransport(options: OpenTransportOptions = {}): Promise<Transport> {
  const given = options.broker ?? process.env.SLUICE_BROKER;
  if (given === undefined && options.config !== undefined) {
    const { loadOpenMsiConfig, kafkaOptionsFromConfig } = await import('../runtime/ini-config.ts');
    const { openKafkaTransport } = await import('./kafka/index.ts');
    const config = loadOpenMsiConfig(options.config);
    return openKafkaTransport({ ...kafkaOptionsFromConfig(config), clientId: options.clientId ?? 'sluice' });
  }
  const spec = parseBrokerSpec(given);
  if (spec.kind === 'embedded') {
    const { openEmbeddedTransport } = await import('./embedded/index.ts');
    return openEmbeddedTransport({ path: spec.path });
  }
  if (spec.kind === 'rabbitmq') {
    const { openRabbitMqTransport } = await import('./rabbitmq/index.ts');
    return openRabbitMqTransport({ url: spec.url, clientId: options.clientId ?? 'sluice' });
  }
  const { openKafkaTransport } = await import('./kafka/index.ts');
  return openKafkaTransport({
    bootstrapServers: spec.bootstrapServers,
    clientId: options.clientId ?? 'sluice',
  });
}
