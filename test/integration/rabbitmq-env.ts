/**
 * Where the RabbitMQ integration tests find their broker: env SLUICE_RABBITMQ_URL (scripts/rabbitmq.sh start
 * prints it). Missing is an error, never a skip: an integration run without a broker must not look green.
 */
export function rabbitMqUrl(): string {
  const url = process.env.SLUICE_RABBITMQ_URL;
  if (url === undefined || url.trim() === '') {
    throw new Error(
      'SLUICE_RABBITMQ_URL is not set: the RabbitMQ integration tests need a broker. Start one with ' +
        '`scripts/rabbitmq.sh start` and run with SLUICE_RABBITMQ_URL=$(cat .infra/rabbitmq/url).',
    );
  }
  return url.trim();
}
