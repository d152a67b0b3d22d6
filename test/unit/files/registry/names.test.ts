import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isSluiceError } from '../../../../src/errors.ts';
import {
  CONSUMER_IN_PROGRESS_COLUMNS,
  CONSUMER_STATUSES,
  CONSUMER_SUCCEEDED_COLUMNS,
  consumingInProgressName,
  matchesRegistryFamily,
  PRODUCER_COMPLETED_COLUMNS,
  PRODUCER_IN_PROGRESS_COLUMNS,
  processedName,
  processedPerThreadName,
  registryStem,
  resultsProducedName,
  resultsProducedPerProducerName,
  rolledName,
  uploadedName,
  uploadedPerProducerName,
  uploadInProgressName,
} from '../../../../src/files/registry/names.ts';

describe('registry file names', () => {
  test('producer side', () => {
    assert.equal(uploadInProgressName('test'), 'upload_to_test_in_progress.csv');
    assert.equal(uploadedName('test'), 'uploaded_to_test.csv');
    assert.equal(uploadedPerProducerName('test', '7f3a9c1d2e40'), 'uploaded_to_test_p7f3a9c1d2e40.csv');
  });

  test('consumer side (the code names, not the documented ones)', () => {
    assert.equal(consumingInProgressName('t.1', 'grp'), 'consuming_from_t.1_in_progress_by_grp.csv');
    assert.equal(processedName('t.1', 'grp'), 'processed_from_t.1_by_grp.csv');
    assert.equal(processedPerThreadName('t.1', 'grp', 140234), 'processed_from_t.1_by_grp_t140234.csv');
    assert.equal(resultsProducedName('results'), 'results_produced_to_results.csv');
    assert.equal(resultsProducedPerProducerName('results', 'abc'), 'results_produced_to_results_pabc.csv');
  });

  test('rolled names use Python str(float) of the epoch seconds with "." replaced by "_"', () => {
    assert.equal(
      rolledName('uploaded_to_t_p7f3a.csv', 1700000000.123456),
      'uploaded_to_t_p7f3a_1700000000_123456.csv',
    );
    assert.equal(
      rolledName('processed_from_t_by_g_t12.csv', 1700000000),
      'processed_from_t_by_g_t12_1700000000_0.csv',
    );
    assert.throws(
      () => rolledName('a.csv', Number.NaN),
      (e: unknown) => isSluiceError(e, 'SLUICE_USAGE'),
    );
  });

  test('registryStem strips .csv and refuses other names', () => {
    assert.equal(registryStem('uploaded_to_t.csv'), 'uploaded_to_t');
    assert.throws(
      () => registryStem('uploaded_to_t'),
      (e: unknown) => isSluiceError(e, 'SLUICE_USAGE'),
    );
  });

  test('names that would leave LOGS/ are SLUICE_UNSAFE_PATH; empty or malformed ids are SLUICE_USAGE', () => {
    const unsafe = (e: unknown): boolean =>
      isSluiceError(e, 'SLUICE_UNSAFE_PATH') && /group id/.test((e as Error).message);
    assert.throws(() => processedName('t', '../x'), unsafe);
    assert.throws(() => consumingInProgressName('t', 'a\\b'), unsafe);
    assert.throws(() => consumingInProgressName('t', 'a\0b'), unsafe);
    assert.throws(
      () => uploadedName('a/b'),
      (e: unknown) => isSluiceError(e, 'SLUICE_UNSAFE_PATH'),
    );
    assert.throws(
      () => uploadedName(''),
      (e: unknown) => isSluiceError(e, 'SLUICE_USAGE'),
    );
    assert.throws(
      () => uploadedPerProducerName('t', '0x7f'),
      (e: unknown) => isSluiceError(e, 'SLUICE_USAGE'),
    );
    assert.throws(
      () => uploadedPerProducerName('t', '7F'),
      (e: unknown) => isSluiceError(e, 'SLUICE_USAGE'),
    );
    assert.throws(
      () => processedPerThreadName('t', 'g', -1),
      (e: unknown) => isSluiceError(e, 'SLUICE_USAGE'),
    );
  });
});

describe('matchesRegistryFamily', () => {
  test('accepts exactly the main file, per-producer, per-thread and rolled files', () => {
    const stem = registryStem(uploadedName('test'));
    for (const name of [
      'uploaded_to_test.csv',
      uploadedPerProducerName('test', '7f3a9c1d2e40'),
      rolledName(uploadedPerProducerName('test', '7f3a9c1d2e40'), 1700000000.25),
      'uploaded_to_test_t140234.csv',
      rolledName('uploaded_to_test_t140234.csv', 1700000000.5),
    ]) {
      assert.ok(matchesRegistryFamily(stem, name), name);
    }
  });

  test('does not absorb other topics or groups sharing a prefix (upstream glob bug)', () => {
    const stem = registryStem(uploadedName('test'));
    for (const name of [
      'uploaded_to_test2.csv',
      'uploaded_to_test2_p7f3a.csv',
      'uploaded_to_test_2.csv',
      'uploaded_to_test_p.csv',
      'uploaded_to_test_p7F3A.csv',
      'uploaded_to_test_pxyz.csv',
      'uploaded_to_test_p7f3a_1700000000.csv',
      'uploaded_to_test_t12a.csv',
      'uploaded_to_test_t.csv',
      'uploaded_to_test.csv.tmp',
      '.uploaded_to_test.csv.123.abcdef.tmp',
      'uploaded_to_test.CSV',
      'xuploaded_to_test.csv',
      'upload_to_test_in_progress.csv',
    ]) {
      assert.equal(matchesRegistryFamily(stem, name), false, name);
    }
    const groupStem = registryStem(processedName('t', 'group'));
    assert.ok(matchesRegistryFamily(groupStem, processedPerThreadName('t', 'group', 7)));
    assert.equal(matchesRegistryFamily(groupStem, processedName('t', 'group2')), false);
    assert.equal(matchesRegistryFamily(groupStem, processedPerThreadName('t', 'group2', 7)), false);
  });

  test('regex metacharacters in topic names match literally', () => {
    const stem = registryStem(uploadedName('a.b+c'));
    assert.ok(matchesRegistryFamily(stem, 'uploaded_to_a.b+c.csv'));
    assert.equal(matchesRegistryFamily(stem, 'uploaded_to_aXbbc.csv'), false);
    assert.equal(matchesRegistryFamily(stem, 'uploaded_to_a.bbbc.csv'), false);
  });
});

describe('registry columns and statuses', () => {
  const names = (cols: readonly { name: string }[]): string => cols.map((c) => c.name).join(';');

  test('column lists are the upstream headers (spec section 5)', () => {
    assert.equal(
      names(PRODUCER_IN_PROGRESS_COLUMNS),
      'filename;rel_filepath;n_chunks;n_chunks_delivered;n_chunks_to_send;started;chunks_delivered;chunks_to_send',
    );
    assert.equal(names(PRODUCER_COMPLETED_COLUMNS), 'filename;rel_filepath;n_chunks;started;completed');
    assert.equal(
      names(CONSUMER_IN_PROGRESS_COLUMNS),
      'filename;rel_filepath;status;n_chunks;first_message;most_recent_message',
    );
    assert.equal(
      names(CONSUMER_SUCCEEDED_COLUMNS),
      'filename;rel_filepath;n_chunks;first_message;processed_at',
    );
    assert.deepEqual(
      [...CONSUMER_STATUSES],
      [
        'in_progress',
        'mismatched_hash',
        'failed',
        'computing_result_message_failed',
        'producing_message_failed',
      ],
    );
  });
});
