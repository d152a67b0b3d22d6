/**
 * pypz-compatible channels: `ChannelReader` / `ChannelWriter` with pypz's lifecycle, status protocol, offsets and
 * record formats, over Kafka (`KafkaChannelReader`/`KafkaChannelWriter`), RabbitMQ (`RMQChannelReader`/
 * `RMQChannelWriter`) and the embedded transport (`EmbeddedChannelReader`/`EmbeddedChannelWriter`).
 */
export {
  ChannelBase,
  type ChannelOptions,
  ChannelReader,
  ChannelWriter,
  driveStep,
  METRICS_WINDOW,
  OFFSET_NOT_INITIALIZED,
  type ReaderOptions,
} from './base.ts';
export { type RecordCodec, type RecordFormat, recordCodec } from './codec.ts';
export {
  finishReader,
  finishWriter,
  type LifecycleOptions,
  type ReaderStartOptions,
  readToEnd,
  startReader,
  startWriter,
} from './lifecycle.ts';
export {
  dataTopicName,
  EmbeddedChannelReader,
  EmbeddedChannelWriter,
  KafkaChannelReader,
  KafkaChannelWriter,
  type LogChannelOptions,
  LogChannelReader,
  LogChannelWriter,
  readerStatusTopicName,
  STATUS_KEY,
  writerStatusTopicName,
} from './log-channel.ts';
export {
  RMQChannelReader,
  RMQChannelWriter,
  type RmqChannelOptions,
  rmqDataQueue,
  rmqReaderStatusStream,
  rmqWriterStatusStream,
} from './rmq-channel.ts';
export {
  ChannelStatus,
  type ChannelStatusMessage,
  ChannelStatusMonitor,
  CLOCK_SKEW_WARNING_MS,
  encodeStatusMessage,
  HEALTH_CHECK_INTERVAL_MS,
  HEALTH_PATIENCE_MS,
  HEARTBEAT_ERROR_BUDGET_MS,
  isChannelStatus,
  NAME_SEPARATOR,
  parseStatusMessage,
  pythonJson,
  type StatusPayload,
  uniqueChannelId,
} from './status.ts';
