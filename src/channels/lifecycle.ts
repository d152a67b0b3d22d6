/**
 * Drives channels through pypz's operator lifecycle (ServiceStart → ResourceCreation → OperationInit →
 * OperationRunning → OperationShutdown → ResourceDeletion), so a program can use a channel end the way a pypz
 * operator does without writing the state machine:
 *
 * ```ts
 * await startWriter(writer);                      // open (waits for the reader's resources), Started
 * await writer.invokeWriteRecords([{ id: 1 }]);
 * await finishWriter(writer);                     // Stopped after the data, Closed
 *
 * await startReader(reader);                      // principal creates resources; open; offset; Started; writers
 * await readToEnd(reader, async (records) => …);  // until every expected writer finished and nothing is left
 * await finishReader(reader);                     // Stopped, Closed (when canClose), principal deletes resources
 * ```
 */
import type { ChannelReader, ChannelWriter } from './base.ts';
import { driveStep } from './base.ts';

export interface LifecycleOptions {
  /** How long open may wait for the other side (pypz `portOpenTimeoutMs`); 0 = forever. Default 0. */
  portOpenTimeoutMs?: number;
  signal?: AbortSignal;
}

export interface ReaderStartOptions extends LifecycleOptions {
  /** Create the channel's resources (default: when this reader is the group principal). */
  createResources?: boolean;
  /** Wait until every expected writer was heard from (pypz `syncConnectionsOpen`); default: at least one. */
  syncConnectionsOpen?: boolean;
  /** How long to wait for writers; 0 = forever (default). */
  writerWaitTimeoutMs?: number;
}

export async function startWriter(writer: ChannelWriter, options: LifecycleOptions = {}): Promise<void> {
  await driveStep(
    `creating the resources of ${writer.uniqueId}`,
    () => writer.invokeResourceCreation(),
    options,
  );
  await driveStep(`opening ${writer.uniqueId}`, () => writer.invokeOpenChannel(), {
    ...options,
    timeoutMs: options.portOpenTimeoutMs ?? 0,
  });
  await writer.invokeStartChannel();
}

export async function startReader(reader: ChannelReader, options: ReaderStartOptions = {}): Promise<void> {
  if (options.createResources ?? reader.isPrincipal) {
    await driveStep(
      `creating the resources of ${reader.uniqueId}`,
      () => reader.invokeResourceCreation(),
      options,
    );
  }
  await driveStep(`opening ${reader.uniqueId}`, () => reader.invokeOpenChannel(), {
    ...options,
    timeoutMs: options.portOpenTimeoutMs ?? 0,
  });
  await reader.setInitialRecordOffsetAuto();
  await reader.invokeStartChannel();
  const want = options.syncConnectionsOpen ? reader.expectedWriterCount : 1;
  await driveStep(
    `waiting for ${want} writer(s) of ${reader.uniqueId}`,
    async () => {
      await reader.invokeSyncStatusUpdate();
      return reader.connectedWriterCount() >= want;
    },
    { ...options, timeoutMs: options.writerWaitTimeoutMs ?? 0, intervalMs: 200 },
  );
}

/**
 * Reads until the channel can retrieve nothing more, handing each non-empty batch to `onRecords` and committing
 * the read offset after each step (pypz commits after every `_on_running`). Returns the number of records read.
 */
export async function readToEnd<T>(
  reader: ChannelReader<T>,
  onRecords: (records: T[]) => void | Promise<void>,
  options: { signal?: AbortSignal } = {},
): Promise<number> {
  let total = 0;
  while (!options.signal?.aborted && (await reader.canRetrieve())) {
    const records = await reader.invokeReadRecords();
    if (records.length > 0) {
      await onRecords(records);
      total += records.length;
    }
    await reader.invokeCommitCurrentReadOffset();
  }
  return total;
}

export async function finishWriter(
  writer: ChannelWriter,
  options: LifecycleOptions & { failed?: unknown } = {},
): Promise<void> {
  if (options.failed !== undefined) await writer.invokeSendError(options.failed);
  else await writer.invokeStopChannel();
  await driveStep(`closing ${writer.uniqueId}`, () => writer.invokeCloseChannel(), options);
}

export async function finishReader(
  reader: ChannelReader,
  options: LifecycleOptions & {
    failed?: unknown;
    /** Delete the resources (default: principal, and only when nothing failed, so a restart continues). */
    deleteResources?: boolean;
    /** The principal's pause before closing when replicated (pypz: 5 s). */
    principalCloseDelayMs?: number;
  } = {},
): Promise<void> {
  if (options.failed !== undefined) await reader.invokeSendError(options.failed);
  else await reader.invokeStopChannel();
  await driveStep(
    `waiting for the replicas of ${reader.uniqueId} to finish`,
    async () => {
      await reader.invokeSyncStatusUpdate();
      return reader.canClose();
    },
    { ...options, intervalMs: 500 },
  );
  if (reader.isPrincipal && reader.groupSize > 1) {
    await new Promise((r) => setTimeout(r, options.principalCloseDelayMs ?? 5000));
  }
  await driveStep(`closing ${reader.uniqueId}`, () => reader.invokeCloseChannel(), options);
  if (options.deleteResources ?? (reader.isPrincipal && options.failed === undefined)) {
    await driveStep(
      `deleting the resources of ${reader.uniqueId}`,
      () => reader.invokeResourceDeletion(),
      options,
    );
  }
}
