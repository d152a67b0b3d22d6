/** The channel suite on the real Kafka broker (KafkaChannelReader / KafkaChannelWriter). */
import { after, before } from 'node:test';
import { pino } from 'pino';
import { KafkaChannelReader, KafkaChannelWriter } from '../../src/channels/index.ts';
import { type KafkaTransport, openKafkaTransport } from '../../src/transport/kafka/index.ts';
import { runChannelSuite } from '../channels/suite.ts';
import { kafkaBootstrap } from './kafka-env.ts';

let transport: KafkaTransport;
const logger = pino({ level: 'silent' });
before(async () => {
  transport = await openKafkaTransport({
    bootstrapServers: [kafkaBootstrap()],
    clientId: 'sluice-channels-test',
  });
});
after(async () => {
  await transport.close();
});

runChannelSuite('kafka', {
  reader: (o) => new KafkaChannelReader({ ...o, transport, logger }),
  writer: (o) => new KafkaChannelWriter({ ...o, transport, logger }),
  positionalOffsets: true,
  roundRobin: true,
});
