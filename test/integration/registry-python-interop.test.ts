/**
 * Cross-checks of the registry CSV code against real Python: the csv module with repr(), and upstream
 * openmsistream's own DataclassTable and registry dataclasses, from the interop venv (scripts/python-venv.sh,
 * which `npm run test:integration` runs first). Without the venv these tests fail, never skip.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import {
  CONSUMER_IN_PROGRESS_COLUMNS,
  CONSUMER_STATUSES,
  CONSUMER_SUCCEEDED_COLUMNS,
  PRODUCER_COMPLETED_COLUMNS,
  PRODUCER_IN_PROGRESS_COLUMNS,
} from '../../src/files/registry/names.ts';
import { type ColumnSpec, formatRegistry, pythonStrRepr, type Row } from '../../src/files/registry/table.ts';
import { COLUMNS, HARD_STRINGS, SEP } from '../unit/files/registry/fixtures.ts';
import { runPython, venvPython } from './venv-python.ts';

const tmpRoot = mkdtempSync(path.join(tmpdir(), 'sluice-registry-py-'));
after(() => rmSync(tmpRoot, { recursive: true, force: true }));

/** Rows as JSON for Python: datetimes as epoch seconds, sets as arrays. */
function toJsonRows(columns: readonly ColumnSpec[], rows: Row[]): unknown[][] {
  return rows.map((r) =>
    columns.map((c) => {
      const v = r[c.name];
      if (v instanceof Date) return v.getTime() / 1000;
      if (v instanceof Set) return [...v];
      return v;
    }),
  );
}

const CSV_REPR_SCRIPT = String.raw`
import ast, csv, datetime, io, json, sys
req = json.load(sys.stdin)
FMT = '%a %b %d, %Y at %H:%M:%S'
cols = req['columns']
def cell(t, v):
    if t == 'datetime':
        return repr(datetime.datetime.fromtimestamp(v).strftime(FMT))
    if t == 'intset':
        return repr(set(v))
    return repr(v)
out = io.StringIO(newline='')
w = csv.writer(out, delimiter=';', quotechar='"', quoting=csv.QUOTE_MINIMAL, lineterminator='\n')
w.writerow([c['name'] for c in cols])
for r in req['rows']:
    w.writerow([cell(c['type'], v) for c, v in zip(cols, r)])
back = []
for rec in list(csv.reader(io.StringIO(req['text'], newline=''), delimiter=';'))[1:]:
    vals = []
    for c, x in zip(cols, rec):
        v = ast.literal_eval(x)
        if c['type'] == 'datetime':
            v = datetime.datetime.strptime(v, FMT).timestamp()
        elif c['type'] == 'intset':
            v = sorted(v)
        vals.append(v)
    back.append(vals)
json.dump({'text': out.getvalue()[:-1], 'back': back}, sys.stdout)
`;

const UPSTREAM_SCRIPT = `
import dataclasses, datetime, json, pathlib, sys, typing
from openmsistream.utilities.dataclass_table import DataclassTable
req = json.load(sys.stdin)
cols = req['columns']
d = pathlib.Path(req['dir'])
TYPES = {'str': str, 'path': pathlib.Path, 'int': int, 'datetime': datetime.datetime, 'intset': typing.Set[int]}
E = dataclasses.make_dataclass('E', [(c['name'], TYPES[c['type']]) for c in cols])
def to_py(t, v):
    if t == 'path': return pathlib.Path(v)
    if t == 'datetime': return datetime.datetime.fromtimestamp(v)
    if t == 'intset': return set(v)
    return v
def to_json(v):
    if isinstance(v, pathlib.PurePath): return str(v)
    if isinstance(v, datetime.datetime): return v.timestamp()
    if isinstance(v, set): return sorted(v)
    return v
# upstream writes the rows
t = DataclassTable(E, filepath=d / 'by_upstream.csv')
t.add_entries([E(*[to_py(c['type'], v) for c, v in zip(cols, r)]) for r in req['rows']])
t.dump_to_file()
# upstream reads sluice's file, then writes what it read to a new file
t = DataclassTable(E, filepath=d / 'by_sluice.csv')
entries = [t.get_entry_attrs(a) for a in t.obj_addresses]
t2 = DataclassTable(E, filepath=d / 'reread_by_upstream.csv')
t2.add_entries([E(**e) for e in entries])
t2.dump_to_file()
json.dump({
    'written': (d / 'by_upstream.csv').read_text(encoding='utf-8'),
    'rewritten': (d / 'reread_by_upstream.csv').read_text(encoding='utf-8'),
    'read': [[to_json(e[c['name']]) for c in cols] for e in entries],
}, sys.stdout)
`;

describe('cross-check with real Python', () => {
  test('formatRegistry matches Python csv + repr byte for byte, and ast.literal_eval reads every cell back', (t) => {
    const python = venvPython(t);
    // Sets whose Python repr happens to be ascending (small ints); the spec makes sluice always ascending.
    const sets = [[], [3, 1, 2], [0, 5, 7], [1]];
    const rows: Row[] = HARD_STRINGS.map((s, i) => ({
      filename: s,
      rel_filepath: `sub;dir/${s}`,
      n_chunks: [0, 3, -1, 12_345_678_901_234][i % 4] as number,
      started: new Date((1_700_000_000 + i * 7_776_000) * 1000), // every 90 days: both sides of DST
      chunks: new Set(sets[i % sets.length]),
    }));
    const text = formatRegistry(COLUMNS, rows);
    const py = runPython<{ text: string; back: unknown[][] }>(python, CSV_REPR_SCRIPT, {
      columns: COLUMNS,
      rows: toJsonRows(COLUMNS, rows),
      text: text.slice(SEP.length),
    });
    assert.equal(SEP + py.text, text);
    const expected = toJsonRows(COLUMNS, rows).map((r) =>
      r.map((v) => (Array.isArray(v) ? [...v].sort((a, b) => a - b) : v)),
    );
    assert.deepEqual(py.back, expected);
  });

  test('upstream DataclassTable writes the same bytes, and reads sluice files', (t) => {
    const python = venvPython(t);
    const dir = mkdtempSync(path.join(tmpRoot, 'upstream-'));
    // Upstream's reader cannot undo escapes (issue #104): only strings without backslash escapes are read back
    // correctly by it. Paths are in pathlib's normal form (no trailing, leading or doubled "/").
    const readable = HARD_STRINGS.filter((s) => !pythonStrRepr(s).includes('\\'));
    assert.ok(readable.length >= 8, `too few upstream-readable names: ${JSON.stringify(readable)}`);
    const sets = [[], [3, 1, 2], [0, 5, 7]];
    const rows: Row[] = readable.map((s, i) => ({
      filename: s,
      rel_filepath: `sub dir/${i}_${s}`,
      n_chunks: i,
      started: new Date((1_772_615_913 + i * 7_776_000) * 1000),
      chunks: new Set(sets[i % sets.length]),
    }));
    const text = formatRegistry(COLUMNS, rows);
    writeFileSync(path.join(dir, 'by_sluice.csv'), text);
    const py = runPython<{ written: string; rewritten: string; read: unknown[][] }>(python, UPSTREAM_SCRIPT, {
      columns: COLUMNS,
      rows: toJsonRows(COLUMNS, rows),
      dir,
    });
    assert.equal(py.written, text, 'upstream writes the same bytes');
    assert.deepEqual(
      py.read,
      toJsonRows(COLUMNS, rows).map((r) =>
        r.map((v) => (Array.isArray(v) ? [...v].sort((a, b) => a - b) : v)),
      ),
      'upstream reads the values sluice wrote',
    );
    assert.equal(py.rewritten, text, 'upstream writes back what it read unchanged');
  });
});

describe('registry columns against upstream', () => {
  test('column names and types match the upstream dataclasses', (t) => {
    const python = venvPython(t);
    const script = `
import dataclasses, datetime, json, pathlib, sys, typing
from openmsistream.data_file_io.actor.file_registry import producer_file_registry as p
from openmsistream.data_file_io.actor.file_registry import stream_handler_registries as s
def kind(tp):
    if tp is str: return 'str'
    if tp is pathlib.Path: return 'path'
    if tp is int: return 'int'
    if tp is datetime.datetime: return 'datetime'
    if typing.get_origin(tp) is set and typing.get_args(tp) == (int,): return 'intset'
    return repr(tp)
cols = lambda dc: [{'name': f.name, 'type': kind(f.type)} for f in dataclasses.fields(dc)]
json.dump({
    'producerInProgress': cols(p.RegistryLineInProgress),
    'producerCompleted': cols(p.RegistryLineCompleted),
    'consumerInProgress': cols(s.StreamHandlerRegistryLineInProgress),
    'consumerSucceeded': cols(s.StreamHandlerRegistryLineSucceeded),
    'statuses': [s.StreamHandlerRegistry.IN_PROGRESS, s.StreamHandlerRegistry.MISMATCHED_HASH,
                 s.StreamProcessorRegistry.FAILED, s.StreamReproducerRegistry.COMPUTING_RESULT_FAILED,
                 s.StreamReproducerRegistry.PRODUCING_MESSAGE_FAILED],
}, sys.stdout)
`;
    const py = runPython<Record<string, unknown>>(python, script, {});
    assert.deepEqual(py.producerInProgress, PRODUCER_IN_PROGRESS_COLUMNS);
    assert.deepEqual(py.producerCompleted, PRODUCER_COMPLETED_COLUMNS);
    assert.deepEqual(py.consumerInProgress, CONSUMER_IN_PROGRESS_COLUMNS);
    assert.deepEqual(py.consumerSucceeded, CONSUMER_SUCCEEDED_COLUMNS);
    assert.deepEqual(py.statuses, [...CONSUMER_STATUSES]);
  });
});
