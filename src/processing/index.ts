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
