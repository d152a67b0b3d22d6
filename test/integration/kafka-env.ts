/**
 * Where the Kafka integration tests find their broker: env SLUICE_KAFKA_BOOTSTRAP (scripts/kafka.sh start prints
 * it). Missing is an error, never a skip: an integration run without a broker must not look green.
 */
export function kafkaBootstrap(): string {
  const bootstrap = process.env.SLUICE_KAFKA_BOOTSTRAP;
  if (bootstrap === undefined || bootstrap.trim() === '') {
    throw new Error(
      'SLUICE_KAFKA_BOOTSTRAP is not set: the Kafka integration tests need a broker. Start one with ' +
        '`scripts/kafka.sh start` and run with SLUICE_KAFKA_BOOTSTRAP=$(cat .infra/kafka/bootstrap).',
    );
  }
  return bootstrap.trim();
}
