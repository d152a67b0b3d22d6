/**
 * OpenMSIStream registry CSV tables (`DataclassTable` files; shared/spec/openmsistream-compat.md, section 5).
 *
 * Format, byte for byte as upstream writes it: a header line with the column names joined by `;`, then one line
 * per row, lines joined with `\n` and **no trailing newline**. Each cell is Python `repr()` of the value, then
 * CSV-quoted the way Python's `csv` module does with `delimiter=';'`, `quotechar='"'` and `QUOTE_MINIMAL` (a cell
 * containing `;`, `"`, CR or LF is wrapped in `"`, inner `"` doubled). On Windows upstream puts a `sep=;` line
 * first; sluice does the same there and skips such a line when reading on any platform.
 *
 * Cell types:
 * - `str`: Python `repr()` of the string. Strings without a backslash, quote or control character come out as
 *   `'text'`, which upstream's reader (it strips the first and last character) reads back correctly. Others get the
 *   escapes `repr()` writes (`'a\tb'`, `"it's"`, `'\\'`), which Python's `ast.literal_eval` and sluice read back
 *   exactly, and which upstream's own reader gets wrong (issue #104).
 * - `path`: a relative path, `/`-separated in sluice; written like `str` with the OS separator (`\` on Windows, as
 *   upstream writes `str(pathlib.Path)`), and converted back to `/` when read on Windows.
 * - `int`: a safe integer, written as `3`.
 * - `datetime`: a `Date`, written as the repr of its *local* time formatted `%a %b %d, %Y at %H:%M:%S` (C locale),
 *   e.g. `'Wed Mar 04, 2026 at 09:18:33'`. Milliseconds are dropped; read back as local time.
 * - `intset`: a `Set<number>` of safe integers, written ascending as `{1, 2, 3}`, empty as `set()`. (Python writes
 *   sets in hash-table order, which is ascending only for small sets of small ints; any order is read.)
 *
 * Reading parses every cell as the Python literal it is (both quote styles, `\\`, `\'`, `\"`, `\t`, `\n`, `\r`,
 * `\a`, `\b`, `\f`, `\v`, octal, `\xNN`, `\uNNNN`, `\UNNNNNNNN`), so files written by upstream and by sluice both
 * read correctly. `\N{…}` named escapes, raw/bytes prefixes and triple quotes are not Python `repr()` output and
 * are rejected.
 *
 * Known limit: whether a non-ASCII character is escaped depends on Unicode's "printable" categories. sluice asks
 * the JavaScript engine (Unicode 15/16 in Node 24); Python 3.11 uses Unicode 14, so a character assigned after
 * Unicode 14 is written raw by sluice and escaped by Python. Both forms read back to the same string.
 */

import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describeError, SluiceError } from '../../errors.ts';
import { writeFileAtomic } from '../../runtime/atomic-file.ts';

export type CellType = 'str' | 'path' | 'int' | 'datetime' | 'intset';

export interface ColumnSpec {
  name: string;
  type: CellType;
}

export type Cell = string | number | Date | Set<number>;

export type Row = Record<string, Cell>;

const DELIMITER = ';';
const QUOTE = '"';
const IS_WINDOWS = process.platform === 'win32';
/** The first line upstream writes on Windows so that Excel splits on `;`. */
const SEP_LINE = `sep=${DELIMITER}`;

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'] as const;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'] as const;

const READ_FIX =
  'Repair that line by hand (each cell is a Python literal, the line is CSV with ";" as delimiter), or move the ' +
  'file aside so that sluice starts a fresh registry (the files it listed are then treated as never seen).';

// ---------------------------------------------------------------------------------------------------------------
// writing

function usage(message: string, details: Record<string, unknown> = {}): SluiceError {
  return new SluiceError('SLUICE_USAGE', message, { details });
}

/** Python's `str.isprintable()` for one code point: false for categories Cc, Cf, Cs, Co, Cn, Zl, Zp, Zs but space. */
const NOT_PRINTABLE = /^[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]$/u;

function hexEscape(prefix: string, codePoint: number, width: number): string {
  return `\\${prefix}${codePoint.toString(16).padStart(width, '0')}`;
}

/** Python 3 `repr()` of a `str`, character for character. Lone surrogates come out as `\udXXX`. */
export function pythonStrRepr(value: string): string {
  const quote = value.includes("'") && !value.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of value) {
    const cp = ch.codePointAt(0) as number;
    if (ch === quote || ch === '\\') out += `\\${ch}`;
    else if (ch === '\t') out += '\\t';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (cp < 0x20 || cp === 0x7f) out += hexEscape('x', cp, 2);
    else if (cp < 0x7f) out += ch;
    else if (!NOT_PRINTABLE.test(ch)) out += ch;
    else if (cp <= 0xff) out += hexEscape('x', cp, 2);
    else if (cp <= 0xffff) out += hexEscape('u', cp, 4);
    else out += hexEscape('U', cp, 8);
  }
  return out + quote;
}

const pad2 = (n: number): string => String(n).padStart(2, '0');

/** `strftime('%a %b %d, %Y at %H:%M:%S')` of the local time of `date` (C locale). */
export function formatRegistryDatetime(date: Date): string {
  return (
    `${DAYS[date.getDay()]} ${MONTHS[date.getMonth()]} ${pad2(date.getDate())}, ${date.getFullYear()} at ` +
    `${pad2(date.getHours())}:${pad2(date.getMinutes())}:${pad2(date.getSeconds())}`
  );
}

function checkColumns(columns: readonly ColumnSpec[]): void {
  if (!Array.isArray(columns) || columns.length === 0) {
    throw usage('A registry table needs at least one column. Pass the column specs from registry/names.ts.');
  }
  const seen = new Set<string>();
  for (const c of columns) {
    if (typeof c?.name !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(c.name)) {
      throw usage(
        `Registry column name ${JSON.stringify(c?.name)} is not a Python identifier. Use names like ` +
          '"rel_filepath" (upstream writes dataclass field names).',
      );
    }
    if (seen.has(c.name)) {
      throw usage(`Registry column ${JSON.stringify(c.name)} is listed twice. Give each column once.`);
    }
    seen.add(c.name);
    if (!['str', 'path', 'int', 'datetime', 'intset'].includes(c.type)) {
      throw usage(
        `Registry column ${c.name} has unknown type ${JSON.stringify(c.type)}. Use str, path, int, datetime or ` +
          'intset.',
      );
    }
  }
}

function cellRepr(column: ColumnSpec, value: unknown, rowIndex: number): string {
  const where = `row ${rowIndex}, column ${column.name} (${column.type})`;
  const bad = (expected: string): SluiceError =>
    usage(
      `Cannot write registry ${where}: expected ${expected}, got ${describeValue(value)}. Pass ${expected}.`,
      { column: column.name, rowIndex },
    );
  switch (column.type) {
    case 'str':
      if (typeof value !== 'string') throw bad('a string');
      return pythonStrRepr(value);
    case 'path':
      if (typeof value !== 'string') throw bad('a relative path string');
      return pythonStrRepr(IS_WINDOWS ? value.replaceAll('/', '\\') : value);
    case 'int':
      if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw bad('a safe integer');
      return String(value);
    case 'datetime':
      if (!(value instanceof Date) || Number.isNaN(value.getTime())) throw bad('a valid Date');
      return pythonStrRepr(formatRegistryDatetime(value));
    case 'intset': {
      if (!(value instanceof Set)) throw bad('a Set of safe integers');
      const items = [...value];
      for (const n of items) {
        if (typeof n !== 'number' || !Number.isSafeInteger(n)) throw bad('a Set of safe integers');
      }
      if (items.length === 0) return 'set()';
      items.sort((a, b) => a - b);
      return `{${items.join(', ')}}`;
    }
  }
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value instanceof Date) return 'an invalid Date';
  if (value instanceof Set) return 'a Set with a non-integer member';
  if (typeof value === 'number') return `the number ${value}`;
  return typeof value;
}

/** Python `csv` QUOTE_MINIMAL for one field with `;` as delimiter and `"` as quote character. */
function csvField(text: string): string {
  return /[;"\r\n]/.test(text) ? `${QUOTE}${text.replaceAll(QUOTE, '""')}${QUOTE}` : text;
}

/**
 * The exact text OpenMSIStream writes for `rows`: header, one line per row, `\n` between lines, no trailing
 * newline (and a leading `sep=;` line on Windows). Throws `SLUICE_USAGE` when a row lacks a column or holds a value
 * of the wrong type.
 */
export function formatRegistry(columns: readonly ColumnSpec[], rows: readonly Row[]): string {
  return joinRegistryText(
    formatRegistryHeader(columns),
    rows.map((row, i) => formatRegistryLine(columns, row, i)),
  );
}

/** The header line (`sep=;` line first on Windows) of a registry file; checks the columns. */
export function formatRegistryHeader(columns: readonly ColumnSpec[]): string {
  checkColumns(columns);
  const header = columns.map((c) => c.name).join(DELIMITER);
  return IS_WINDOWS ? `${SEP_LINE}\n${header}` : header;
}

/**
 * One row's line, as `formatRegistry` writes it (`rowIndex` only names the row in errors). Lets a writer that
 * only appends rows format each row once and keep its line.
 */
export function formatRegistryLine(columns: readonly ColumnSpec[], row: Row, rowIndex = 0): string {
  return columns.map((c) => csvField(cellRepr(c, row?.[c.name], rowIndex))).join(DELIMITER);
}

/** The file text of a header and row lines: `\n` between lines, no trailing newline. */
export function joinRegistryText(header: string, lines: readonly string[]): string {
  return lines.length === 0 ? header : `${header}\n${lines.join('\n')}`;
}

// ---------------------------------------------------------------------------------------------------------------
// reading

interface CsvRecord {
  fields: string[];
  /** 1-based line number where the record starts. */
  line: number;
}

class ParseProblem extends Error {}

/**
 * Split `text` into CSV records the way Python's `csv.reader` does (non-strict dialect, `;` delimiter, `"` quote,
 * doubled quotes inside quoted fields, a quote inside an unquoted field kept literally, CR, LF or CRLF ending a
 * record outside quotes, blank lines skipped). An unterminated quoted field is an error.
 */
function splitCsv(text: string, source: string, firstLine: number): CsvRecord[] {
  const records: CsvRecord[] = [];
  let fields: string[] = [];
  let field = '';
  let line = firstLine;
  let recordLine = firstLine;
  // 0 start of record, 1 start of field, 2 in unquoted field, 3 in quoted field, 4 quote seen in quoted field
  let state = 0;
  const endRecord = (): void => {
    if (state !== 0) {
      fields.push(field);
      records.push({ fields, line: recordLine });
    }
    fields = [];
    field = '';
    state = 0;
  };
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] as string;
    const isNewline = ch === '\n' || ch === '\r';
    if (state === 3) {
      if (ch === QUOTE) state = 4;
      else field += ch;
    } else if (isNewline) {
      endRecord();
    } else if (ch === DELIMITER) {
      if (state === 0) recordLine = line;
      fields.push(field);
      field = '';
      state = 1;
    } else if (state === 4) {
      // after a closing quote: a doubled quote is a literal quote; anything else is kept, as Python does
      if (ch === QUOTE) {
        field += QUOTE;
        state = 3;
      } else {
        field += ch;
        state = 2;
      }
    } else if (ch === QUOTE && state !== 2) {
      if (state === 0) recordLine = line;
      state = 3;
    } else {
      if (state === 0) recordLine = line;
      field += ch;
      state = 2;
    }
    if (ch === '\n' || (ch === '\r' && text[i + 1] !== '\n')) line++;
  }
  if (state === 3) {
    throw registryError(
      source,
      recordLine,
      'a quoted cell is never closed (the file ends inside "…"); the file was probably cut off while being written',
    );
  }
  endRecord();
  return records;
}

const SIMPLE_ESCAPES: Record<string, string> = {
  '\\': '\\',
  "'": "'",
  '"': '"',
  a: '\x07',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
  v: '\v',
};

/** Parse one Python string literal (a `repr()` of a str, or any single-line non-raw str literal). */
export function parsePythonStrLiteral(cell: string): string {
  let i = 0;
  if (cell[0] === 'u' || cell[0] === 'U') i = 1;
  const quote = cell[i];
  if (quote !== "'" && quote !== '"') {
    throw new ParseProblem(
      `expected a Python string literal in quotes ('…' or "…"), got ${JSON.stringify(cell)}`,
    );
  }
  if (cell.startsWith(quote.repeat(3), i) && cell.length > i + 2) {
    throw new ParseProblem(
      `triple-quoted strings are not supported in registry cells: ${JSON.stringify(cell)}`,
    );
  }
  i++;
  let out = '';
  for (;;) {
    if (i >= cell.length) {
      throw new ParseProblem(`string literal ${JSON.stringify(cell)} has no closing ${quote}`);
    }
    const ch = cell[i] as string;
    if (ch === quote) {
      if (i !== cell.length - 1) {
        throw new ParseProblem(
          `unexpected text ${JSON.stringify(cell.slice(i + 1))} after the string literal in ${JSON.stringify(cell)}`,
        );
      }
      return out;
    }
    if (ch === '\n' || ch === '\r') {
      throw new ParseProblem(
        `string literal ${JSON.stringify(cell)} contains a raw line break (it must be written as \\n)`,
      );
    }
    if (ch !== '\\') {
      out += ch;
      i++;
      continue;
    }
    const next = cell[i + 1];
    if (next === undefined) {
      throw new ParseProblem(`string literal ${JSON.stringify(cell)} ends with a lone backslash`);
    }
    const simple = SIMPLE_ESCAPES[next];
    if (simple !== undefined) {
      out += simple;
      i += 2;
    } else if (next >= '0' && next <= '7') {
      const m = /^[0-7]{1,3}/.exec(cell.slice(i + 1)) as RegExpExecArray;
      out += String.fromCharCode(Number.parseInt(m[0], 8));
      i += 1 + m[0].length;
    } else if (next === 'x' || next === 'u' || next === 'U') {
      const width = next === 'x' ? 2 : next === 'u' ? 4 : 8;
      const digits = cell.slice(i + 2, i + 2 + width);
      if (!new RegExp(`^[0-9a-fA-F]{${width}}$`).test(digits)) {
        throw new ParseProblem(
          `truncated \\${next} escape in ${JSON.stringify(cell)} (needs ${width} hex digits)`,
        );
      }
      const cp = Number.parseInt(digits, 16);
      if (cp > 0x10ffff) {
        throw new ParseProblem(`escape \\${next}${digits} in ${JSON.stringify(cell)} is beyond U+10FFFF`);
      }
      out += String.fromCodePoint(cp);
      i += 2 + width;
    } else if (next === 'N') {
      throw new ParseProblem(
        `named escapes (\\N{…}) are not supported in registry cells: ${JSON.stringify(cell)}; write the ` +
          'character itself or a \\u escape',
      );
    } else if (next === '\n') {
      i += 2; // line continuation
    } else {
      // Python keeps unknown escapes as written (with a warning)
      out += `\\${next}`;
      i += 2;
    }
  }
}

const DATETIME_RE =
  /^(mon|tue|wed|thu|fri|sat|sun) (jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec) (\d{1,2}), (\d{1,4}) at (\d{1,2}):(\d{1,2}):(\d{1,2})$/i;

/** Inverse of `formatRegistryDatetime`: local time, like Python's `strptime` (the weekday is not cross-checked). */
export function parseRegistryDatetime(text: string): Date {
  const m = DATETIME_RE.exec(text);
  if (!m) {
    throw new ParseProblem(
      `${JSON.stringify(text)} is not a datetime in the form 'Wed Mar 04, 2026 at 09:18:33'`,
    );
  }
  const month = MONTHS.findIndex((name) => name.toLowerCase() === (m[2] as string).toLowerCase());
  const [year, day, hours, minutes, seconds] = [m[4], m[3], m[5], m[6], m[7]].map(Number) as [
    number,
    number,
    number,
    number,
    number,
  ];
  const date = new Date(2000, 0, 1, 0, 0, 0, 0);
  date.setFullYear(year, month, day);
  date.setHours(hours, minutes, seconds, 0);
  if (
    date.getFullYear() !== year ||
    date.getMonth() !== month ||
    date.getDate() !== day ||
    hours > 23 ||
    minutes > 59 ||
    seconds > 59
  ) {
    throw new ParseProblem(`${JSON.stringify(text)} is not a valid calendar date and time`);
  }
  return date;
}

function parseIntCell(text: string): number {
  const t = text.trim();
  if (!/^[+-]?\d+$/.test(t)) throw new ParseProblem(`${JSON.stringify(text)} is not an integer`);
  const n = Number(t);
  if (!Number.isSafeInteger(n)) {
    throw new ParseProblem(`${t} is outside the safe integer range (±2^53−1)`);
  }
  return n;
}

function parseIntSet(text: string): Set<number> {
  const t = text.trim();
  if (/^set\(\s*\)$/.test(t)) return new Set();
  const m = /^\{(.*)\}$/s.exec(t);
  if (!m || (m[1] as string).trim() === '') {
    throw new ParseProblem(`${JSON.stringify(text)} is not a set of integers (expected set() or {1, 2, 3})`);
  }
  const parts = (m[1] as string).split(',');
  if (parts.length > 1 && (parts[parts.length - 1] as string).trim() === '') parts.pop(); // trailing comma
  return new Set(parts.map((p) => parseIntCell(p)));
}

function parseCell(column: ColumnSpec, raw: string): Cell {
  switch (column.type) {
    case 'str':
      return parsePythonStrLiteral(raw);
    case 'path': {
      const p = parsePythonStrLiteral(raw);
      return IS_WINDOWS ? p.replaceAll('\\', '/') : p;
    }
    case 'int':
      return parseIntCell(raw);
    case 'datetime':
      return parseRegistryDatetime(parsePythonStrLiteral(raw));
    case 'intset':
      return parseIntSet(raw);
  }
}

function registryError(source: string, line: number, problem: string): SluiceError {
  return new SluiceError(
    'SLUICE_REGISTRY',
    `Registry file ${source}, line ${line}: ${problem}. ${READ_FIX}`,
    {
      details: { source, line },
    },
  );
}

/**
 * Parse registry text written by OpenMSIStream or by `formatRegistry`. The header must list exactly `columns`, in
 * order. Empty text (or a header alone) gives no rows. A malformed line throws `SLUICE_REGISTRY` naming `source`
 * (default `<registry text>`) and the line number.
 */
export function parseRegistry(
  text: string,
  columns: readonly ColumnSpec[],
  source = '<registry text>',
): Row[] {
  checkColumns(columns);
  const sep = /^sep=;(\r\n|\n|\r|$)/.exec(text);
  const records = splitCsv(sep ? text.slice(sep[0].length) : text, source, sep ? 2 : 1);
  const header = records[0];
  if (header === undefined) return [];
  const expected = columns.map((c) => c.name);
  if (header.fields.length !== expected.length || header.fields.some((f, i) => f !== expected[i])) {
    throw registryError(
      source,
      header.line,
      `the header ${JSON.stringify(header.fields.join(DELIMITER))} does not match the expected ` +
        `${JSON.stringify(expected.join(DELIMITER))}; the file is a different kind of registry or was edited`,
    );
  }
  const rows: Row[] = [];
  for (const record of records.slice(1)) {
    if (record.fields.length !== columns.length) {
      throw registryError(
        source,
        record.line,
        `the line has ${record.fields.length} cells but the header has ${columns.length} ` +
          `(a ";" inside a cell must be inside "…")`,
      );
    }
    const row: Row = {};
    columns.forEach((column, i) => {
      const raw = record.fields[i] as string;
      try {
        row[column.name] = parseCell(column, raw);
      } catch (err) {
        if (!(err instanceof ParseProblem)) throw err;
        throw registryError(source, record.line, `column ${column.name} (${column.type}): ${err.message}`);
      }
    });
    rows.push(row);
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------------------------
// files

const RETRYABLE = new Set(['EAGAIN', 'EBUSY', 'EMFILE', 'ENFILE', 'ENOSPC', 'EINTR']);

function ioError(action: string, file: string, err: unknown): SluiceError {
  const code = (err as { code?: unknown }).code;
  return new SluiceError(
    'SLUICE_IO',
    `Could not ${action} registry file ${file}: ${describeError(err)}. Check that the directory exists, is ` +
      'writable by this user, and that the disk is not full.',
    { cause: err, canRetry: typeof code === 'string' && RETRYABLE.has(code), details: { path: file } },
  );
}

/**
 * Write `rows` to `file` atomically: the text goes to a hidden temp file in the same directory
 * (`.<name>.<pid>.<random>.tmp`, which no registry pattern matches), is fsynced, then renamed over `file`; the
 * directory is fsynced after the rename where the platform allows it. Creates the parent directory if needed.
 * Readers see the old or the new file, never a partial one. Throws `SLUICE_USAGE` for bad rows (before touching
 * the disk) and `SLUICE_IO` for file-system errors (the temp file is removed).
 */
export async function writeRegistryAtomic(
  file: string,
  columns: readonly ColumnSpec[],
  rows: readonly Row[],
): Promise<void> {
  await writeRegistryTextAtomic(file, formatRegistry(columns, rows));
}

/** `writeRegistryAtomic` for text already formatted (`formatRegistryHeader`, `formatRegistryLine`). */
export async function writeRegistryTextAtomic(file: string, text: string): Promise<void> {
  try {
    await mkdir(path.dirname(file), { recursive: true });
  } catch (err) {
    throw ioError('create the directory of', file, err);
  }
  try {
    await writeFileAtomic(file, text);
  } catch (err) {
    throw ioError('write', file, err);
  }
}

/** Read and parse a registry file; a missing file gives `[]`. Throws `SLUICE_REGISTRY` or `SLUICE_IO`. */
export async function readRegistry(file: string, columns: readonly ColumnSpec[]): Promise<Row[]> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return [];
    throw ioError('read', file, err);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (err) {
    throw new SluiceError('SLUICE_REGISTRY', `Registry file ${file} is not valid UTF-8. ${READ_FIX}`, {
      cause: err,
      details: { source: file },
    });
  }
  return parseRegistry(text, columns, file);
}
