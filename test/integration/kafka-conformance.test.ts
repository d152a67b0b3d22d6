/**
 * The shared transport conformance suite on a real Kafka broker (SLUICE_KAFKA_BOOTSTRAP, see kafka-env.ts).
 */
import { openKafkaTransport } from '../../src/transport/kafka/index.ts';
import { runConformance } from '../conformance/suite.ts';
import { kafkaBootstrap } from './kafka-env.ts';

const bootstrapServers = kafkaBootstrap();

runConformance('kafka', () => openKafkaTransport({ bootstrapServers, clientId: 'sluice-conformance' }), {
  // Kafka's group protocol needs at least a heartbeat interval to notice a member leaving; 3 s keeps hand-over fast.
  sessionTimeoutMs: 3000,
});
