/**
 * OpenMSIStream message keys for file chunks and processing results (shared/spec/openmsistream-compat.md,
 * sections 3, 8 and 10).
 *
 * All three keys start with the same prefix, `<subdir with "/" replaced by "_">_<filename>_chunk`, built by
 * `keyPrefix` alone, so a restart filter made from `keyPrefix` matches the keys `chunkKey` makes, root-level files
 * included (upstream's restart filter gets those wrong).
 *
 * The mapping is not injective (`sub_dir/a.dat` and `sub/dir/a.dat` share a prefix): never use a key to identify a
 * file; use the decoded `subdirStr` and `filename`.
 */

import { partitionForKey } from '../transport/partitioner.ts';
import type { Partitioner } from '../transport/types.ts';

/** `<subdir with "/" → "_">_<filename>_chunk`; for a root-level file (`subdirStr === ''`): `_<filename>_chunk`. */
export function keyPrefix(subdirStr: string, filename: string): string {
  return `${subdirStr.split('/').join('_')}_${filename}_chunk`;
}

/** Key of chunk `chunkI` (1-based) of `nTotal`, e.g. `sub_dir_a.dat_chunk_2_of_3` or `_a.dat_chunk_1_of_3`. */
export function chunkKey(subdirStr: string, filename: string, chunkI: number, nTotal: number): string {
  return `${keyPrefix(subdirStr, filename)}_${chunkI}_of_${nTotal}`;
}

/**
 * Key of the processing-result message a reproducer sends for a rebuilt file, e.g.
 * `sub_dir_a.dat_chunk_processing_result`. Upstream passes the rebuilt file's name, which includes any
 * `filenameAppend` (`a_v2.dat`), while chunk keys use the name without it.
 */
export function resultKey(subdirStr: string, filename: string): string {
  return `${keyPrefix(subdirStr, filename)}_processing_result`;
}

const CHUNK_SUFFIX = /_chunk_\d+_of_\d+$/;

/**
 * The partitioner sluice's uploaders use: every chunk of a file goes to the partition Kafka's murmur2 picks for
 * the file's key prefix, so one consumer of a group receives a whole file and several download processes can
 * share a topic. (OpenMSIStream spreads a file's chunks over partitions by the full chunk key; sluice's
 * consumers rebuild both layouts.) Keys that are not chunk keys (heartbeats) hash as they are.
 */
export const filePartitioner: Partitioner = (key, partitionCount) =>
  key === null
    ? 0
    : partitionForKey(Buffer.from(key.toString('utf8').replace(CHUNK_SUFFIX, ''), 'utf8'), partitionCount);
