/**
 * Names and column lists of the OpenMSIStream registry CSV files (shared/spec/openmsistream-compat.md, section 5),
 * so that an existing deployment's `LOGS/` directories can be taken over in place.
 *
 * Producer side, in `<upload_dir>/LOGS/`:
 * - `upload_to_<topic>_in_progress.csv` (`PRODUCER_IN_PROGRESS_COLUMNS`);
 * - `uploaded_to_<topic>.csv` (`PRODUCER_COMPLETED_COLUMNS`), fed while running by per-producer files
 *   `uploaded_to_<topic>_p<producer id hex>.csv`, rolled to `…_p<id>_<epoch seconds, "." → "_">.csv`.
 *
 * Consumer side, in `<output_dir>/LOGS/`:
 * - `consuming_from_<topic>_in_progress_by_<group id>.csv` (`CONSUMER_IN_PROGRESS_COLUMNS`, `CONSUMER_STATUSES`);
 * - processors: `processed_from_<topic>_by_<group id>.csv`, per thread `…_t<thread id>.csv` (rolled like the
 *   producer files);
 * - reproducers: `results_produced_to_<producer topic>.csv`, per producer `…_p<id>.csv` (rolled likewise);
 * - success columns: `CONSUMER_SUCCEEDED_COLUMNS`.
 *
 * Upstream consolidates a family of files with the glob `<stem>*.csv`, so topic `test` swallows (and deletes) the
 * files of topic `test2`. `matchesRegistryFamily` accepts only the exact shapes listed there.
 */

import { SluiceError } from '../../errors.ts';
import type { ColumnSpec } from './table.ts';

/** Name of the registry directory inside the upload or output directory. */
export const LOGS_DIR_NAME = 'LOGS';

/** Registry file extension. */
export const REGISTRY_SUFFIX = '.csv';

/** Upstream rolls a per-producer or per-thread file after this many lines (`max_completed_lines_per_file`). */
export const MAX_LINES_PER_PARTIAL_FILE = 1000;

/** Upstream rewrites a table at most this often (seconds) when only fields of existing rows change. */
export const UPDATE_FILE_EVERY_SECONDS = 5;

// ---------------------------------------------------------------------------------------------------------------
// columns

export const PRODUCER_IN_PROGRESS_COLUMNS: readonly ColumnSpec[] = Object.freeze([
  { name: 'filename', type: 'str' },
  { name: 'rel_filepath', type: 'path' },
  { name: 'n_chunks', type: 'int' },
  { name: 'n_chunks_delivered', type: 'int' },
  { name: 'n_chunks_to_send', type: 'int' },
  { name: 'started', type: 'datetime' },
  { name: 'chunks_delivered', type: 'intset' },
  { name: 'chunks_to_send', type: 'intset' },
]);

export const PRODUCER_COMPLETED_COLUMNS: readonly ColumnSpec[] = Object.freeze([
  { name: 'filename', type: 'str' },
  { name: 'rel_filepath', type: 'path' },
  { name: 'n_chunks', type: 'int' },
  { name: 'started', type: 'datetime' },
  { name: 'completed', type: 'datetime' },
]);

export const CONSUMER_IN_PROGRESS_COLUMNS: readonly ColumnSpec[] = Object.freeze([
  { name: 'filename', type: 'str' },
  { name: 'rel_filepath', type: 'path' },
  { name: 'status', type: 'str' },
  { name: 'n_chunks', type: 'int' },
  { name: 'first_message', type: 'datetime' },
  { name: 'most_recent_message', type: 'datetime' },
]);

/** Columns of `processed_from_…` and `results_produced_to_…` files. */
export const CONSUMER_SUCCEEDED_COLUMNS: readonly ColumnSpec[] = Object.freeze([
  { name: 'filename', type: 'str' },
  { name: 'rel_filepath', type: 'path' },
  { name: 'n_chunks', type: 'int' },
  { name: 'first_message', type: 'datetime' },
  { name: 'processed_at', type: 'datetime' },
]);

/**
 * `status` values of the consumer in-progress table: `in_progress`, `mismatched_hash`, `failed` (processors),
 * `computing_result_message_failed` and `producing_message_failed` (reproducers).
 */
export const CONSUMER_STATUSES = [
  'in_progress',
  'mismatched_hash',
  'failed',
  'computing_result_message_failed',
  'producing_message_failed',
] as const;

export type ConsumerStatus = (typeof CONSUMER_STATUSES)[number];

// ---------------------------------------------------------------------------------------------------------------
// file names

/**
 * Topic names, group ids and producer/thread ids become part of a file name. Refuse those that would put the
 * file elsewhere or cannot be a file name at all.
 */
function namePart(what: string, value: string): string {
  if (typeof value !== 'string' || value === '') {
    throw new SluiceError(
      'SLUICE_USAGE',
      `Cannot build a registry file name: the ${what} is empty. Pass the real ${what}.`,
    );
  }
  if (/[/\\\0]/.test(value)) {
    throw new SluiceError(
      'SLUICE_UNSAFE_PATH',
      `Cannot build a registry file name from ${what} ${JSON.stringify(value)}: it contains '/', '\\' or NUL, ` +
        `so the registry would land outside the ${LOGS_DIR_NAME} directory. Use a ${what} without those characters.`,
      { details: { [what]: value } },
    );
  }
  return value;
}

function hexId(what: string, id: string): string {
  namePart(what, id);
  if (!/^[0-9a-f]+$/.test(id)) {
    throw new SluiceError(
      'SLUICE_USAGE',
      `Registry ${what} ${JSON.stringify(id)} is not lower-case hexadecimal. Pass an id like "7f3a9c1d2e40" ` +
        '(upstream uses hex(id(producer)) without "0x"); other shapes break the file-family patterns.',
    );
  }
  return id;
}

/** `upload_to_<topic>_in_progress.csv` */
export function uploadInProgressName(topic: string): string {
  return `upload_to_${namePart('topic', topic)}_in_progress${REGISTRY_SUFFIX}`;
}

/** `uploaded_to_<topic>.csv` */
export function uploadedName(topic: string): string {
  return `uploaded_to_${namePart('topic', topic)}${REGISTRY_SUFFIX}`;
}

/** `uploaded_to_<topic>_p<producer id hex>.csv`, the file one producer appends to while running. */
export function uploadedPerProducerName(topic: string, producerIdHex: string): string {
  return perProducerName(uploadedName(topic), producerIdHex);
}

/** `consuming_from_<topic>_in_progress_by_<group id>.csv` */
export function consumingInProgressName(topic: string, groupId: string): string {
  return `consuming_from_${namePart('topic', topic)}_in_progress_by_${namePart('group id', groupId)}${REGISTRY_SUFFIX}`;
}

/** `processed_from_<topic>_by_<group id>.csv` */
export function processedName(topic: string, groupId: string): string {
  return `processed_from_${namePart('topic', topic)}_by_${namePart('group id', groupId)}${REGISTRY_SUFFIX}`;
}

/** `processed_from_<topic>_by_<group id>_t<thread id>.csv`, the file one processor thread appends to. */
export function processedPerThreadName(topic: string, groupId: string, threadId: number): string {
  if (!Number.isSafeInteger(threadId) || threadId < 0) {
    throw new SluiceError(
      'SLUICE_USAGE',
      `Registry thread id ${String(threadId)} is not a non-negative integer. Pass the worker's numeric id.`,
    );
  }
  return `${registryStem(processedName(topic, groupId))}_t${threadId}${REGISTRY_SUFFIX}`;
}

/** `results_produced_to_<producer topic>.csv` (no group id). */
export function resultsProducedName(topic: string): string {
  return `results_produced_to_${namePart('topic', topic)}${REGISTRY_SUFFIX}`;
}

/** `results_produced_to_<producer topic>_p<producer id hex>.csv` */
export function resultsProducedPerProducerName(topic: string, producerIdHex: string): string {
  return perProducerName(resultsProducedName(topic), producerIdHex);
}

/** `<stem>_p<producer id hex>.csv` for the family of `mainName`. */
export function perProducerName(mainName: string, producerIdHex: string): string {
  return `${registryStem(mainName)}_p${hexId('producer id', producerIdHex)}${REGISTRY_SUFFIX}`;
}

/**
 * The name a full per-producer or per-thread file is renamed to before a new one is started:
 * `<stem>_<epoch seconds as Python's str(float), "." → "_">.csv`, e.g. `…_p7f3a_1700000000_25.csv`.
 */
export function rolledName(partialName: string, epochSeconds: number): string {
  if (!Number.isFinite(epochSeconds) || epochSeconds <= 0 || epochSeconds >= 1e16) {
    throw new SluiceError(
      'SLUICE_USAGE',
      `Cannot roll registry file ${partialName}: timestamp ${epochSeconds} is not a positive epoch time in ` +
        'seconds. Pass Date.now() / 1000.',
    );
  }
  let text = String(epochSeconds);
  if (!text.includes('.')) text += '.0'; // Python's str() of an integral float
  return `${registryStem(partialName)}_${text.replace('.', '_')}${REGISTRY_SUFFIX}`;
}

/** `name` without its `.csv` suffix. */
export function registryStem(name: string): string {
  if (!name.endsWith(REGISTRY_SUFFIX)) {
    throw new SluiceError(
      'SLUICE_USAGE',
      `${JSON.stringify(name)} is not a registry file name (it does not end in ${REGISTRY_SUFFIX}). Pass a name ` +
        'built by the functions of registry/names.ts.',
    );
  }
  return name.slice(0, -REGISTRY_SUFFIX.length);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Whether `fileName` (a base name) belongs to the registry family whose main file is `<stem>.csv`. `stem` is the
 * main file's name without `.csv` (see `registryStem`). Exactly these shapes match:
 * `<stem>.csv`, `<stem>_p<hex>.csv`, `<stem>_p<hex>_<digits>_<digits>.csv`, `<stem>_t<digits>.csv`,
 * `<stem>_t<digits>_<digits>_<digits>.csv` (the last is a rolled per-thread file, which upstream writes but
 * spec section 5 does not list). So `uploaded_to_test2.csv` is not in the family of `uploaded_to_test`.
 *
 * The naming scheme itself stays ambiguous when one topic or group id is another plus a suffix of these shapes
 * (topic `test_pab` vs. producer `ab` of topic `test`); avoid such names.
 */
export function matchesRegistryFamily(stem: string, fileName: string): boolean {
  const s = escapeRegExp(stem);
  const suffix = escapeRegExp(REGISTRY_SUFFIX);
  return new RegExp(`^${s}(?:_p[0-9a-f]+(?:_\\d+_\\d+)?|_t\\d+(?:_\\d+_\\d+)?)?${suffix}$`).test(fileName);
}
