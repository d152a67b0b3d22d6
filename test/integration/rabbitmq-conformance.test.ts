/**
 * The shared transport conformance suite on a real RabbitMQ broker (SLUICE_RABBITMQ_URL, see rabbitmq-env.ts).
 */
import { openRabbitMqTransport } from '../../src/transport/rabbitmq/index.ts';
import { runConformance } from '../conformance/suite.ts';
import { rabbitMqUrl } from './rabbitmq-env.ts';

const url = rabbitMqUrl();

runConformance('rabbitmq', () => openRabbitMqTransport({ url, clientId: 'sluice-conformance' }), {
  sessionTimeoutMs: 3000,
  expectedFailures: {
    'sendAndCommit: output records and input offsets commit atomically':
      'RabbitMQ has no transactions spanning stream queues (AMQP tx does not cover streams), so records and ' +
      'consumer offsets cannot be committed in one atomic step; sendAndCommit throws SLUICE_UNSUPPORTED',
  },
});
