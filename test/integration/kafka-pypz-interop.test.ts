/** sluice Kafka channels ↔ pypz-kafka-io 0.10.2 (kafka-python 2.0.2) on the real Kafka 4.1 broker. */
import { after, before } from 'node:test';
import { pino } from 'pino';
import { KafkaChannelReader, KafkaChannelWriter } from '../../src/channels/index.ts';
import { type KafkaTransport, openKafkaTransport } from '../../src/transport/kafka/index.ts';
import { kafkaBootstrap } from './kafka-env.ts';
import { runPypzInterop } from './pypz-interop.ts';

let transport: KafkaTransport;
const logger = pino({ level: 'silent' });
before(async () => {
  transport = await openKafkaTransport({
    bootstrapServers: [kafkaBootstrap()],
    clientId: 'sluice-pypz-interop',
  });
});
after(async () => {
  await transport.close();
});

runPypzInterop('kafka', {
  broker: 'kafka',
  peerLocation: ['--bootstrap', process.env.SLUICE_KAFKA_BOOTSTRAP ?? ''],
  reader: (o) => new KafkaChannelReader({ ...o, transport, logger }),
  writer: (o) => new KafkaChannelWriter({ ...o, transport, logger }),
});
