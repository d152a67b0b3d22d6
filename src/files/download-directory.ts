import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { Heartbeats, PROGRAM_COUNTERS, stableProgramId } from '../runtime/heartbeat.ts';
import type { Transport } from '../transport/types.ts';
import { DataFileStreamHandler, type StreamSummary } from './stream-handler.ts';

export interface DownloadDirectoryOptions {
  transport: Transport;
  outputDir: string;
  /** Default `test`, as OpenMSIStream. */
  topic?: string;
  /**
   * Default: a stable id derived from the output directory, so a restart resumes where the last run stopped.
   * `create_new` gives a fresh group per run (OpenMSIStream's default), which re-reads the whole topic.
   */
  groupId?: string;
  downloadRegex?: RegExp;
  logger: Logger;
  heartbeatTopic?: string;
  heartbeatProgramId?: string;
  heartbeatIntervalSecs?: number;
  autoCreateTopic?: boolean;
  sessionTimeoutMs?: number;
}

export const DEFAULT_TOPIC = 'test';

export function defaultGroupId(programName: string, outputDir: string): string {
  return stableProgramId(programName, resolve(outputDir));
}

/**
 * `DataFileDownloadDirectory`: rebuilds every file of a chunk topic under an output directory, byte for byte,
 * verified by SHA-512, crash-safe (see `DataFileStreamHandler`).
 */
export class DataFileDownloadDirectory extends DataFileStreamHandler {
  private readonly heartbeatOptions: DownloadDirectoryOptions;

  constructor(options: DownloadDirectoryOptions) {
    const outputDir = resolve(options.outputDir);
    const groupId =
      options.groupId === undefined
        ? defaultGroupId('DataFileDownloadDirectory', outputDir)
        : options.groupId === 'create_new'
          ? `DataFileDownloadDirectory_${crypto.randomUUID()}`
          : options.groupId;
    const heartbeats =
      options.heartbeatTopic === undefined
        ? undefined
        : new Heartbeats({
            producer: options.transport.producer({ autoCreateTopics: true }),
            topic: options.heartbeatTopic,
            programId: options.heartbeatProgramId ?? defaultGroupId('DataFileDownloadDirectory', outputDir),
            intervalSecs: options.heartbeatIntervalSecs,
            counters: PROGRAM_COUNTERS.processor,
            logger: options.logger,
          });
    super({
      transport: options.transport,
      topic: options.topic ?? DEFAULT_TOPIC,
      groupId,
      outputDir,
      mode: 'disk',
      logger: options.logger,
      downloadRegex: options.downloadRegex,
      heartbeats,
      autoCreateTopic: options.autoCreateTopic,
      sessionTimeoutMs: options.sessionTimeoutMs,
    });
    this.heartbeatOptions = options;
    // offsets are committed by checkpoints only: one directory fsync per directory and checkpoint
    this.batchDirectorySyncs = true;
  }

  get groupId(): string {
    return this.options.groupId;
  }

  override async run(signal: AbortSignal): Promise<StreamSummary> {
    this.options.heartbeats?.start();
    try {
      return await super.run(signal);
    } finally {
      await this.options.heartbeats?.stop();
      const s = this.summary;
      this.heartbeatOptions.logger.info(
        { ...s },
        `stopped: ${s.filesCompleted} file(s) rebuilt, ${s.filesSkipped} already present, ${s.filesFailed} rejected, ${s.messagesQuarantined} message(s) quarantined`,
      );
    }
  }
}
