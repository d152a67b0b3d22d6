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
