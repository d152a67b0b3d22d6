import type { ColumnSpec } from '../../../../src/files/registry/table.ts';

/** Rows and strings shared by the registry tests and their real-Python cross-checks (integration tier). */
export const SEP = process.platform === 'win32' ? 'sep=;\n' : '';

export const COLUMNS: ColumnSpec[] = [
  { name: 'filename', type: 'str' },
  { name: 'rel_filepath', type: 'path' },
  { name: 'n_chunks', type: 'int' },
  { name: 'started', type: 'datetime' },
  { name: 'chunks', type: 'intset' },
];

export const STARTED = new Date(2026, 2, 4, 9, 18, 33); // local time, as upstream writes it
export const STARTED_TEXT = "'Wed Mar 04, 2026 at 09:18:33'";

/** Names that break upstream's reader (issue #104) or need CSV quoting, plus non-ASCII. */
export const HARD_STRINGS = [
  'plain.dat',
  'a;b.txt',
  'a,b.txt',
  'tab\there.dat',
  "it's.dat",
  'say "hi".dat',
  `both ' and ".dat`,
  'back\\slash\\',
  'new\nline\r\n.dat',
  'nul\0 bell\x07 esc\x1b del\x7f',
  'héllo 日本語 😀.dat',
  '\u00a0nbsp \u200bzwsp \u2028ls \ue000pua \u0378unassigned \x85nel \xadshy \u{e0001}tag',
  'lone \ud800 surrogate',
  '',
  "'",
  '"',
  ';',
  '\\\'"',
];
