// The classes come from runnable.ts, which gives them their Runnable statics (runFromCommandLine, …).

/** For CPU-heavy user code: a pool of worker threads; call `pool.run(file.bytestring)` in your processor. */
export { WorkerPool, type WorkerPoolOptions } from '../records/strategies/run-task-in-workers.ts';
export {
  type DataFileStreamProcessorOptions,
  DEFAULT_CONSUMER_TOPIC,
  type DoneEntry,
  type DownloadDataFile,
  FileFailure,
  type HeartbeatOptions,
  Mutex,
} from './data-file-stream-processor.ts';
export {
  type DataFileStreamReproducerOptions,
  doneTopicName,
  ReproducerMessage,
} from './data-file-stream-reproducer.ts';
export {
  ARGUMENTS,
  type ArgumentDef,
  type CommandLineArguments,
  DataFileStreamProcessor,
  DataFileStreamReproducer,
  LogTopic,
  MetadataJSONReproducer,
  Runnable,
} from './runnable.ts';
export { S3TransferStreamProcessor } from './s3-transfer-stream-processor.ts';
