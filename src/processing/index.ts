/** For CPU-heavy user code: a pool of worker threads; call `pool.run(file.bytestring)` in your processor. */
export { WorkerPool, type WorkerPoolOptions } from '../records/strategies/run-task-in-workers.ts';
export {
  DataFileStreamProcessor,
  type DataFileStreamProcessorOptions,
  DEFAULT_CONSUMER_TOPIC,
  type DownloadDataFile,
  FileFailure,
  type HeartbeatOptions,
  Mutex,
} from './data-file-stream-processor.ts';
export {
  DataFileStreamReproducer,
  type DataFileStreamReproducerOptions,
  doneTopicName,
  MetadataJSONReproducer,
  ReproducerMessage,
} from './data-file-stream-reproducer.ts';
