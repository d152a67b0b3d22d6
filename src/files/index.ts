export { type DataFileChunk, DEFAULT_CHUNK_SIZE, decodeChunk, encodeChunk } from './chunk-codec.ts';
export { chunkKey, filePartitioner, keyPrefix, resultKey } from './chunk-key.ts';
export { DOWNLOAD_CODES, DownloadDataFile, type DownloadMode } from './download-data-file.ts';
export { DataFileDownloadDirectory, type DownloadDirectoryOptions } from './download-directory.ts';
export { DataFileStreamHandler, type FileOutcome, type StreamSummary } from './stream-handler.ts';
export { UploadDataFile } from './upload-data-file.ts';
export {
  DataFileUploadDirectory,
  type DataFileUploadDirectoryOptions,
  LEGACY_UPLOAD_REGEX,
} from './upload-directory.ts';
