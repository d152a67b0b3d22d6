/**
 * The Kafka transport: sluice's transport contract (src/transport/types.ts) on `@platformatic/kafka`.
 *
 * ```ts
 * const transport = await openKafkaTransport({ bootstrapServers: '127.0.0.1:9092' });
 * ```
 */
export { KafkaConsumer, type TransactionGroup } from './consumer.ts';
export {
  type KafkaSaslOptions,
  type KafkaTransportOptions,
  parseBootstrapServers,
  parseBroker,
  type ResolvedKafkaOptions,
  resolveKafkaOptions,
  SASL_MECHANISMS,
  type SaslMechanism,
} from './options.ts';
export { KafkaProducer } from './producer.ts';
export { KafkaTransport, openKafkaTransport } from './transport.ts';
