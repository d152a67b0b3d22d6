import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeError, isSluiceError } from '../errors.ts';
import type { ConsumedRecord } from '../transport/types.ts';
import { LOGS_DIR_NAME } from './registry/names.ts';

export const QUARANTINE_DIR_NAME = 'quarantine';

export interface QuarantineEntry {
  topic: string;
  partition: number;
  offset: number;
  key: string | null;
  code: string;
  reason: string;
  at: string;
}

/**
 * Keeps a message that cannot be used (undecodable, wrong hash, unsafe path, a file whose chunks disagree) for a
 * person to look at, instead of crashing or dropping it silently: the raw value goes to
 * `OUTDIR/LOGS/quarantine/<topic>_<partition>_<offset>.value`, the reason to the `.json` beside it. The names
 * come from the message's coordinates, never from its content, so a hostile message cannot choose where it lands.
 */
export async function quarantineRecord(
  outputDir: string,
  record: ConsumedRecord,
  err: unknown,
): Promise<QuarantineEntry> {
  const dir = join(outputDir, LOGS_DIR_NAME, QUARANTINE_DIR_NAME);
  await mkdir(dir, { recursive: true });
  const base = `${record.topic}_${record.partition}_${record.offset}`;
  const entry: QuarantineEntry = {
    topic: record.topic,
    partition: record.partition,
    offset: record.offset,
    key: record.key === null ? null : record.key.toString('utf8'),
    code: isSluiceError(err) ? err.code : 'SLUICE_UNEXPECTED',
    reason: describeError(err),
    at: new Date().toISOString(),
  };
  if (record.value !== null) await writeFile(join(dir, `${base}.value`), record.value);
  await writeFile(join(dir, `${base}.json`), `${JSON.stringify(entry, null, 2)}\n`);
  return entry;
}
