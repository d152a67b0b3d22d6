/**
 * KCL-style record processors (Amazon Kinesis Client Library model, interface v3 with v1/v2 adapters).
 * - Native mode: `KclWorker` runs processors over any sluice transport (native.ts documents the mapping).
 * - Multilang mode: `KCLProcess` / `runKCLProcess` make a processor the child of Amazon's MultiLangDaemon.
 * - Testing: `converse` (a fake daemon), `inProcessChild`, `spawnChild`.
 */
export { fromV1, fromV2, leaseLostCheckpointer, toRecordProcessor, v1ToV2 } from './adapters.ts';
export {
  type ChildHandle,
  type Conversation,
  type ConverseOptions,
  converse,
  type DaemonMessage,
  inProcessChild,
  spawnChild,
} from './daemon.ts';
export { CheckpointError, isCheckpointError, KCL_ERROR_NAMES, type KclErrorName } from './errors.ts';
export { LineReader } from './lines.ts';
export {
  KCL_ACTIONS,
  KCLProcess,
  type KCLProcessOptions,
  type RunKCLProcessOptions,
  runKCLProcess,
} from './multilang.ts';
export { KclWorker, type KclWorkerOptions, type ShardInfo } from './native.ts';
export { compareSequenceNumbers, isSequenceNumber, nativeRecord, parseMultilangRecord } from './records.ts';
export type * from './types.ts';
