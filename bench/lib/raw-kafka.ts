import { randomUUID } from 'node:crypto';
import { Consumer as RawConsumer } from '@platformatic/kafka';

/**
 * The baseline every benchmark compares sluice's Kafka consumer with: a raw `@platformatic/kafka` consumer in a
 * fresh group, reading `topic` from the earliest offset, committing nothing by itself.
 */
export async function rawEarliestConsumer(bootstrap: string, topic: string) {
  const consumer = new RawConsumer({
    clientId: 'bench-raw',
    bootstrapBrokers: [bootstrap],
    groupId: `bench-raw-${randomUUID()}`,
    autocommit: false,
    maxWaitTime: 500,
  });
  const stream = await consumer.consume({
    topics: [topic],
    mode: 'earliest',
    autocommit: false,
    sessionTimeout: 10_000,
    heartbeatInterval: 1000,
  });
  return { consumer, stream };
}
