/**
 * The RabbitMQ transport: sluice's log contract (src/transport/types.ts) on RabbitMQ stream queues, over AMQP 0-9-1
 * with `amqplib`. Tested against RabbitMQ 3.10.8 with the stream plugin (scripts/rabbitmq.sh).
 *
 * ```ts
 * const transport = await openRabbitMqTransport({ url: 'amqp://guest:guest@127.0.0.1:5672' });
 * ```
 *
 * Design:
 * - **Partitions.** Topic `T` with N partitions is N durable stream queues `T.p0` … `T.p<N-1>`
 *   (`x-queue-type: stream`). Offsets are the streams' own offsets (consecutive from 0). Records go through the
 *   default exchange (routing key = queue), `mandatory` so a missing queue fails the send, with publisher confirms.
 *   Keys pick partitions with Kafka's murmur2 (`makePartitioner`), exactly like the Kafka transport.
 * - **Topic catalog.** AMQP 0-9-1 cannot list queues, so creations and deletions are records in the stream
 *   `sluice.topics`, which every transport follows. Queries first append a `sync` marker and wait for it, so they
 *   see everything written before (by any client). Two racing creates: the first record wins.
 * - **Record offsets on send.** Confirms do not say where a message landed. A per-partition follower reads the
 *   stream from its last chunk (subscribed before the publish) and matches message ids, so `send()` returns exact
 *   offsets; it stops after a few idle seconds. This costs a second read of what the partition receives while a
 *   send is waiting.
 * - **Committed offsets.** RabbitMQ's server-side offset tracking exists only in the stream protocol, not over
 *   AMQP 0-9-1 (and sluice does not use the stream protocol port: the JS stream client cannot talk to 3.10). Each
 *   group has a durable stream `sluice.offsets.<group>`; a commit appends `{partition → next offset}`; the committed
 *   offset is the last commit of a partition. Readers fold the stream from the first record (it grows by one
 *   small record per commit; see "limits").
 * - **Groups.** Members announce themselves on the fanout exchange `sluice.group.<group>` (hello/bye, a heartbeat
 *   every `heartbeatIntervalMs`); each member computes the same split; a partition is owned by whoever holds the
 *   exclusive queue `sluice.lease.<group>.<p>.<topic>` on its own connection. RabbitMQ guarantees one holder and
 *   frees it when the connection dies, so a dead member's partitions move as soon as the broker notices.
 * - **Reading.** One stream consumer per assigned partition (`x-stream-offset` = committed offset, `first`, `next`
 *   or an explicit offset); acknowledged when handed out, so the prefetch bounds the buffer and pause is free.
 *   `seek` replaces the partition's consumer with one at the new offset.
 * - **Reconnection.** Every connection comes back after a broker restart; stream consumers continue after the last
 *   offset they saw (readers) or handed out (partitions); members take their leases back. Sends that were not
 *   confirmed when the connection dropped fail with SLUICE_DELIVERY_FAILED (`canRetry`); confirmed records are
 *   stored in durable streams and survive.
 *
 * Limits (also in `capabilities` and the conformance suite's expected failures):
 * - no atomic produce+commit (`sendAndCommit` throws SLUICE_UNSUPPORTED): no transactions across stream queues;
 * - retention is RabbitMQ's stream retention (`x-max-age`, `x-max-length-bytes`), applied per segment, so only
 *   approximately (capabilities.retention is false);
 * - `describeTopic` end offsets are read from the last chunk, and an empty partition is recognised only by a
 *   short wait (AMQP 0-9-1 cannot ask a stream for its offsets): exact for a quiet partition, a slightly old
 *   snapshot while it is written;
 * - `describeGroup` members are those that answer a probe within 300 ms;
 * - the offsets and catalog streams are never compacted.
 *
 * Work queues (./work-queue.ts, `openRabbitMqWorkQueues`): exchanges, classic / quorum / stream queues, confirmed
 * publishes and prefetch-bounded consumers with manual acks on one reconnecting connection, for pypz-compatible
 * channels and anything else that wants plain RabbitMQ queue semantics rather than the log contract.
 */
export { RabbitMqConsumer } from './consumer.ts';
export { RabbitMqProducer } from './producer.ts';
export {
  openRabbitMqTransport,
  RabbitMqTransport,
  type RabbitMqTransportOptions,
  type ResolvedRabbitMqOptions,
  resolveRabbitMqOptions,
} from './transport.ts';
export {
  type ConsumeOptions,
  type DeclareExchangeOptions,
  type DeclareQueueOptions,
  type DeleteExchangeResult,
  type DeleteQueueResult,
  type ExchangeType,
  type OutgoingMessage,
  openRabbitMqWorkQueues,
  type PollOptions,
  type PublishOptions,
  type QueueStatus,
  type QueueType,
  RabbitMqWorkQueues,
  type StreamOffset,
  WorkQueueConsumer,
  type WorkQueueDelivery,
  type WorkQueuesOptions,
} from './work-queue.ts';
