/**
 * Adapters from amazon-kclpy's v1/v2 processor shapes to v3, with kclpy's mapping (`amazon_kclpy/v3/processor.py`
 * V2toV3Processor and `v2/processor.py` V1toV2Processor):
 * - `leaseLost` → `shutdown(reason ZOMBIE)` with a checkpointer that always rejects (`ShutdownException`);
 * - `shardEnded` → `shutdown(reason TERMINATE, checkpointer)`;
 * - v1 gets positional arguments: `initialize(shardId)`, `processRecords(records, checkpointer)`,
 *   `shutdown(checkpointer, reason)`, `shutdownRequested(checkpointer)`.
 * A missing `shutdownRequested` does nothing (kclpy's v1/v2 base classes define it as a no-op).
 */
import { CheckpointError } from './errors.ts';
import type {
  AnyRecordProcessor,
  Checkpointer,
  RecordProcessor,
  RecordProcessorV1,
  RecordProcessorV2,
} from './types.ts';

/** The checkpointer handed to `shutdown(ZOMBIE)`: checkpointing after a lost lease is impossible. */
export const leaseLostCheckpointer: Checkpointer = {
  checkpoint: () =>
    Promise.reject(
      new CheckpointError('ShutdownException', 'Checkpointing is not allowed when the lease is lost.'),
    ),
};

export function fromV2(p: RecordProcessorV2): RecordProcessor {
  return {
    version: 3,
    initialize: (input) => p.initialize(input),
    processRecords: (input) => p.processRecords(input),
    leaseLost: () => p.shutdown({ reason: 'ZOMBIE', checkpointer: leaseLostCheckpointer }),
    shardEnded: (input) => p.shutdown({ reason: 'TERMINATE', checkpointer: input.checkpointer }),
    shutdownRequested: (input) => p.shutdownRequested?.(input),
  };
}

/** v1 → v2, as kclpy's V1toV2Processor (unpacks the input objects into positional arguments). */
export function v1ToV2(p: RecordProcessorV1): RecordProcessorV2 {
  return {
    version: 2,
    initialize: (input) => p.initialize(input.shardId),
    processRecords: (input) => p.processRecords(input.records, input.checkpointer),
    shutdown: (input) => p.shutdown(input.checkpointer, input.reason),
    shutdownRequested: (input) => p.shutdownRequested?.(input.checkpointer),
  };
}

export function fromV1(p: RecordProcessorV1): RecordProcessor {
  return fromV2(v1ToV2(p));
}

/** Any supported shape as v3, picked by `version` as kclpy's KCLProcess does (absent or 3: used as is). */
export function toRecordProcessor(p: AnyRecordProcessor): RecordProcessor {
  if (p.version === 1) return fromV1(p);
  if (p.version === 2) return fromV2(p);
  return p;
}
