/**
 * amazon-kclpy's sample record processor (samples/sample_kclpy_app.py, release 3.2.0), ported to sluice's v3
 * interface line by line, so that the same JSON-lines input gets the same answers from both (the integration test
 * test/integration/kcl-kclpy.test.ts compares the transcripts). The same class runs natively on any sluice
 * transport (native-embedded.ts) and as the child of Amazon's MultiLangDaemon (multilang-child.ts).
 *
 * What it does, as upstream: logs every record to stderr; tracks the largest (sequence, sub-sequence) seen;
 * checkpoints there at most every 30 s (the first batch always); retries a checkpoint up to 5 times, 5 s apart, on
 * ThrottlingException and other errors, and gives up on ShutdownException; checkpoints on shardEnded and
 * shutdownRequested.
 *
 * Two deliberate differences, both visible only off the normal path:
 * - upstream `print()`s two messages to stdout, the protocol channel (the daemon skips them as unexpected lines);
 *   here they go through console.log, which `runKCLProcess` sends to stderr;
 * - upstream checkpoints at the string "None" when its first batch is empty (the daemon rejects it); here nothing
 *   is checkpointed until a record was seen.
 */
import { type Checkpointer, isCheckpointError, type RecordProcessor } from '../../src/records/kcl/index.ts';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export class SampleRecordProcessor implements RecordProcessor {
  readonly #sleepSeconds = 5;
  readonly #checkpointRetries = 5;
  readonly #checkpointFreqSeconds = 30;
  #largestSeq: [bigint | null, number | null] = [null, null];
  #lastCheckpointTime = 0;
  readonly #log: (message: string) => void;

  /** `log` receives upstream's messages verbatim (no trailing newline on most). Default: stderr. */
  constructor(log: (message: string) => void = (m) => process.stderr.write(m)) {
    this.#log = log;
  }

  initialize(): void {
    this.#largestSeq = [null, null];
    this.#lastCheckpointTime = 0;
  }

  /** Checkpoints with retries on retryable errors. */
  async checkpoint(
    checkpointer: Checkpointer,
    sequenceNumber?: string | null,
    subSequenceNumber?: number | null,
  ): Promise<void> {
    for (let n = 0; n < this.#checkpointRetries; n++) {
      try {
        await checkpointer.checkpoint(sequenceNumber, subSequenceNumber);
        return;
      } catch (e) {
        if (!isCheckpointError(e)) throw e;
        if (e.code === 'ShutdownException') {
          // another worker has taken the lease: stop checkpointing
          console.log('Encountered shutdown exception, skipping checkpoint');
          return;
        } else if (e.code === 'ThrottlingException') {
          if (this.#checkpointRetries - 1 === n) {
            process.stderr.write(`Failed to checkpoint after ${n} attempts, giving up.\n`);
            return;
          }
          console.log(
            `Was throttled while checkpointing, will attempt again in ${this.#sleepSeconds} seconds`,
          );
        } else if (e.code === 'InvalidStateException') {
          process.stderr.write('MultiLangDaemon reported an invalid state while checkpointing.\n');
        } else {
          process.stderr.write(`Encountered an error while checkpointing, error was '${e.code}'.\n`);
        }
      }
      await sleep(this.#sleepSeconds * 1000);
    }
  }

  processRecord(data: Buffer, partitionKey: string, sequenceNumber: bigint, subSequenceNumber: number): void {
    // insert your processing logic here
    this.#log(
      `Record (Partition Key: ${partitionKey}, Sequence Number: ${sequenceNumber}, Subsequence Number: ${subSequenceNumber}, Data Size: ${data.length}`,
    );
  }

  shouldUpdateSequence(sequenceNumber: bigint, subSequenceNumber: number): boolean {
    const [seq, sub] = this.#largestSeq;
    return (
      seq === null ||
      sequenceNumber > seq ||
      (sequenceNumber === seq && subSequenceNumber > (sub ?? Number.NEGATIVE_INFINITY))
    );
  }

  async processRecords(input: {
    records: { data: Buffer; sequenceNumber: string; subSequenceNumber: number; partitionKey: string }[];
    checkpointer: Checkpointer;
  }): Promise<void> {
    try {
      for (const record of input.records) {
        const seq = BigInt(record.sequenceNumber);
        const sub = record.subSequenceNumber;
        this.processRecord(record.data, record.partitionKey, seq, sub);
        if (this.shouldUpdateSequence(seq, sub)) this.#largestSeq = [seq, sub];
      }
      // checkpoints every #checkpointFreqSeconds seconds
      const now = Date.now() / 1000;
      if (now - this.#lastCheckpointTime > this.#checkpointFreqSeconds && this.#largestSeq[0] !== null) {
        await this.checkpoint(input.checkpointer, String(this.#largestSeq[0]), this.#largestSeq[1]);
        this.#lastCheckpointTime = Date.now() / 1000;
      }
    } catch (e) {
      this.#log(`Encountered an exception while processing records. Exception was ${String(e)}\n`);
    }
  }

  leaseLost(): void {
    this.#log('Lease has been lost');
  }

  async shardEnded(input: { checkpointer: Checkpointer }): Promise<void> {
    this.#log('Shard has ended checkpointing');
    await input.checkpointer.checkpoint();
  }

  async shutdownRequested(input: { checkpointer: Checkpointer }): Promise<void> {
    this.#log('Shutdown has been requested, checkpointing.');
    await input.checkpointer.checkpoint();
  }
}
