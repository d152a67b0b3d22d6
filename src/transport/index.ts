export {
  BROKER_HELP,
  type BrokerSpec,
  type OpenTransportOptions,
  openTransport,
  parseBrokerSpec,
} from './open.ts';
export { makePartitioner, murmur2, partitionForKey } from './partitioner.ts';
export type * from './types.ts';
